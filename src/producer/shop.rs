//! The simulated shop: a catalogue with skewed popularity and accessories, a growing
//! population of shoppers with habits, and visits that walk the funnel, emitted as events
//! in event-time order.
//!
//! Over days, shoppers come back as their habit says ([`Habit`]): loyal repeat buyers
//! every few days, lapsing ones for a few weeks and then never, occasional ones every
//! couple of weeks, one-time ones never. A return that is due takes the next visit's
//! place, so habits shape who visits, not how many visits there are: the rate holds.
//! Some products have accessories, which a shopper who puts the main product in the cart
//! often adds too, so that orders hold products bought together on purpose; and a
//! shopper who looks at a product often looks at others of its category next, so that
//! sessions view related products together.
//!
//! With [`Shop::with_bots`], a fraction of visits are bots of three kinds
//! ([`BotKind`]): scrapers, card testers and cart stuffers, each new users with the
//! devices, countries and user agents shoppers have, so that nothing in an event marks
//! them; their events carry the kind for the labels file only.
//!
//! Owns the shopper model only: what happens in a visit and when. It is a pure function
//! of its seed; it does not pace, inject faults or write.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use dataflows::event::EventType;
use dataflows::time::Millis;
use fake::faker::internet::en::{IPv4, IPv6};
use fake::uuid::UUIDv4;
use fake::Fake;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const CATEGORIES: [(&str, i64, i64); 12] = [
    // (category, cheapest, dearest) in cents
    ("electronics", 1_999, 249_999),
    ("books", 499, 4_999),
    ("clothing", 999, 19_999),
    ("home", 799, 59_999),
    ("beauty", 399, 8_999),
    ("sports", 1_499, 39_999),
    ("toys", 699, 14_999),
    ("grocery", 199, 2_999),
    ("garden", 999, 29_999),
    ("automotive", 1_299, 49_999),
    ("music", 899, 89_999),
    ("office", 299, 24_999),
];
const DEVICES: [(&str, u32); 3] = [("desktop", 45), ("mobile", 45), ("tablet", 10)];
const COUNTRIES: [(&str, u32); 15] = [
    ("US", 35),
    ("GB", 10),
    ("DE", 9),
    ("FR", 7),
    ("IN", 6),
    ("CA", 5),
    ("BR", 5),
    ("JP", 4),
    ("AU", 3),
    ("ES", 3),
    ("IT", 3),
    ("NL", 3),
    ("MX", 3),
    ("PL", 2),
    ("SE", 2),
];
const REFERRERS: [(&str, u32); 6] = [("direct", 30), ("search", 30), ("social", 12), ("email", 8), ("ads", 15), ("affiliate", 5)];
const USER_AGENTS: [(&str, &str, u32); 8] = [
    ("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 40),
    ("desktop", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 25),
    ("desktop", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 10),
    ("mobile", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 45),
    ("mobile", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", 40),
    ("mobile", "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", 15),
    ("tablet", "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 70),
    ("tablet", "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 30),
];
const SEARCH_TERMS: [&str; 10] =
    ["headphones", "novel", "running+shoes", "coffee", "lamp", "lego", "yoga+mat", "charger", "jacket", "vinyl"];

struct Product {
    id: String,
    category: &'static str,
    price_cents: i64,
    /// Products often bought with this one (a case for a phone, a lens for a camera).
    accessories: Vec<usize>,
}

/// How a shopper comes back over days, drawn when they first visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Habit {
    /// Returns every few days and buys readily.
    Loyal,
    /// Returns every few days for a few weeks, then never.
    Lapsing,
    /// Returns every couple of weeks.
    Occasional,
    /// Never comes back on purpose (may still drop by the same day).
    OneTime,
}

const HABITS: [(Habit, u32); 4] = [(Habit::Loyal, 12), (Habit::Lapsing, 18), (Habit::Occasional, 25), (Habit::OneTime, 45)];
const DAY: Millis = 86_400_000;

impl Habit {
    /// Mean days between visits, if the shopper comes back at all.
    fn mean_days_between_visits(self) -> Option<f64> {
        match self {
            Habit::Loyal => Some(2.5),
            Habit::Lapsing => Some(4.0),
            Habit::Occasional => Some(12.0),
            Habit::OneTime => None,
        }
    }

    /// How much likelier than others the shopper is to put a viewed product in the cart.
    fn cart_weight(self) -> u32 {
        match self {
            Habit::Loyal => 18,
            _ => 6,
        }
    }
}

struct User {
    id: String,
    device: &'static str,
    country: &'static str,
    user_agent: &'static str,
    ip: String,
    habit: Habit,
    /// When they first visited.
    first_seen: Millis,
    /// A lapsing shopper's last return.
    lapses_at: Millis,
    /// A bot, never picked for a shopper's visit.
    bot: bool,
}

/// An automated visitor's purpose, which shapes its visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BotKind {
    /// Reads product pages across the whole catalogue, fast and without buying.
    Scraper,
    /// Tries stolen cards with many small purchases of one cheap product, some declined.
    CardTester,
    /// Fills carts with many products in large quantities, to hold stock, and never pays.
    CartStuffer,
}

impl BotKind {
    pub const ALL: [BotKind; 3] = [BotKind::Scraper, BotKind::CardTester, BotKind::CartStuffer];

    /// The name in the labels file.
    pub fn as_str(self) -> &'static str {
        match self {
            BotKind::Scraper => "scraper",
            BotKind::CardTester => "card_tester",
            BotKind::CartStuffer => "cart_stuffer",
        }
    }
}

/// Average events of a bot's visit (see [`Shop::bot_visit`]), to keep the event rate.
const BOT_EVENTS_PER_VISIT: f64 = 63.0;

/// One simulated event, before it is written.
#[derive(Clone, Debug)]
pub struct SimEvent {
    pub event_id: String,
    pub time: Millis,
    pub event_type: EventType,
    pub user: usize,
    pub page: String,
    pub product: Option<usize>,
    pub quantity: Option<i64>,
    pub order_id: Option<String>,
    pub referrer: &'static str,
    /// The bot that made it, if one did: for the labels, never written in the event.
    pub bot: Option<BotKind>,
}

/// What varies between the events of a visit: time, type, page, product, quantity and order.
type Click = (Millis, EventType, String, Option<usize>, Option<i64>, Option<String>);

/// Who makes a visit: every event of the visit carries these.
#[derive(Clone, Copy)]
struct Visitor {
    user: usize,
    referrer: &'static str,
    bot: Option<BotKind>,
}

impl Visitor {
    /// Schedules one event: `(time, type, page, product, quantity, order_id)`.
    fn emit(self, shop: &mut Shop, (time, event_type, page, product, quantity, order_id): Click) {
        let event_id: String = UUIDv4.fake_with_rng(&mut shop.rng);
        let Visitor { user, referrer, bot } = self;
        shop.schedule(SimEvent { event_id, time, event_type, user, page, product, quantity, order_id, referrer, bot });
    }

    /// A product page view.
    fn view(self, shop: &mut Shop, time: Millis, product: usize) {
        let page = format!("/product/{}", shop.products[product].id);
        self.emit(shop, (time, EventType::ProductView, page, Some(product), None, None));
    }
}

/// The shop: call [`Shop::next_event`] for an endless stream in event-time order.
pub struct Shop {
    rng: SmallRng,
    products: Vec<Product>,
    popularity: Vec<f64>,
    /// The products of each category, most popular first, with their running popularity.
    categories: HashMap<&'static str, (Vec<usize>, Vec<f64>)>,
    users: Vec<User>,
    /// Mean visits per millisecond (at the daily average with `daily_curve`).
    visit_rate: f64,
    /// The fraction of visits that are bots.
    bots: f64,
    daily_curve: bool,
    /// When the next visit starts, in fractional milliseconds: at high rates visits
    /// arrive less than a millisecond apart.
    next_visit: f64,
    /// Events of visits under way, by (time, sequence).
    pending: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    /// Returns habits have scheduled, by (due time, user).
    returns: BinaryHeap<Reverse<(Millis, usize)>>,
    slots: Vec<Option<SimEvent>>,
    free: Vec<usize>,
    sequence: u64,
}

/// Average events per visit of this model, to turn an event rate into a visit rate.
const EVENTS_PER_VISIT: f64 = 4.5;

impl Shop {
    /// A shop starting at `start` whose traffic is `events_per_second` of event time:
    /// flat, or with `daily_curve` following the time of day with that daily average.
    pub fn new(seed: u64, start: Millis, events_per_second: f64, daily_curve: bool) -> Shop {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut products: Vec<Product> = (0..2000)
            .map(|i| {
                let (category, low, high) = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                // Log-uniform prices, most ending in .99.
                let price = (low as f64 * (high as f64 / low as f64).powf(rng.random::<f64>())) as i64;
                let price_cents = if rng.random_bool(0.8) { (price / 100) * 100 + 99 } else { price };
                Product { id: format!("P{i:05}"), category, price_cents, accessories: Vec::new() }
            })
            .collect();
        // A fifth of the products, the popular ones first, get one to three accessories
        // from the same category, cheaper than they are.
        for main in 0..products.len() {
            if !rng.random_bool(if main < 200 { 0.6 } else { 0.15 }) {
                continue;
            }
            let wanted = rng.random_range(1..=3);
            for _ in 0..40 {
                let other = rng.random_range(0..products.len());
                let fits = other != main
                    && products[other].category == products[main].category
                    && products[other].price_cents < products[main].price_cents
                    && !products[main].accessories.contains(&other);
                if fits {
                    products[main].accessories.push(other);
                    if products[main].accessories.len() == wanted {
                        break;
                    }
                }
            }
        }
        // Zipf-like popularity (s = 1.1): a few products get most of the views.
        let mut total = 0.0;
        let mut categories: HashMap<&'static str, (Vec<usize>, Vec<f64>)> = HashMap::new();
        let popularity = (1..=products.len())
            .map(|rank| {
                let weight = 1.0 / (rank as f64).powf(1.1);
                let (members, running) = categories.entry(products[rank - 1].category).or_default();
                members.push(rank - 1);
                running.push(running.last().unwrap_or(&0.0) + weight);
                total += weight;
                total
            })
            .collect();
        Shop {
            rng,
            products,
            popularity,
            categories,
            users: Vec::new(),
            visit_rate: events_per_second / EVENTS_PER_VISIT / 1000.0,
            bots: 0.0,
            daily_curve,
            next_visit: start as f64,
            pending: BinaryHeap::new(),
            returns: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            sequence: 0,
        }
    }

    /// Makes `fraction` of the visits bots' (see [`BotKind`]), at the same event rate.
    pub fn with_bots(mut self, fraction: f64) -> Shop {
        let per_visit = (1.0 - fraction) * EVENTS_PER_VISIT + fraction * BOT_EVENTS_PER_VISIT;
        self.visit_rate *= EVENTS_PER_VISIT / per_visit;
        self.bots = fraction;
        self
    }

    /// The next event in event-time order.
    pub fn next_event(&mut self) -> SimEvent {
        loop {
            let start = self.next_visit as Millis;
            if let Some(Reverse((time, _, slot))) = self.pending.peek().copied() {
                if time <= start {
                    self.pending.pop();
                    self.free.push(slot);
                    return self.slots[slot].take().expect("a pending slot holds an event");
                }
            }
            self.visit(start);
            // Poisson arrivals, at a rate that may follow the time of day.
            let rate = if self.daily_curve { self.visit_rate * daily_shape(start) } else { self.visit_rate };
            self.next_visit += -(1.0 - self.rng.random::<f64>()).ln() / rate;
        }
    }

    pub fn user_fields(&self, user: usize) -> (&str, &str, &str, &str, &str) {
        let u = &self.users[user];
        (&u.id, u.device, u.country, u.user_agent, &u.ip)
    }

    pub fn product_fields(&self, product: usize) -> (&str, &str, i64) {
        let p = &self.products[product];
        (&p.id, p.category, p.price_cents)
    }

    fn schedule(&mut self, event: SimEvent) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(event);
                s
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        let time = self.slots[slot].as_ref().map(|e| e.time).unwrap_or_default();
        self.sequence += 1;
        self.pending.push(Reverse((time, self.sequence, slot)));
    }

    /// Who makes the visit starting at `start`: a shopper whose habit brings them back by
    /// then; else, for a third of visits, a shopper of the same day or so (recent ones
    /// likelier); else someone new.
    fn pick_user(&mut self, start: Millis) -> usize {
        if let Some(Reverse((due, user))) = self.returns.peek().copied() {
            if due <= start {
                self.returns.pop();
                return user;
            }
        }
        let recent = self.users.partition_point(|u| u.first_seen < start - DAY);
        if recent < self.users.len() && self.rng.random_bool(0.35) {
            let n = self.users.len() - recent;
            let back = (n as f64 * self.rng.random::<f64>().powi(3)) as usize;
            let user = self.users.len() - 1 - back.min(n - 1);
            if !self.users[user].bot {
                return user;
            }
        }
        self.new_user(start)
    }

    /// A shopper seen for the first time at `start`.
    fn new_user(&mut self, start: Millis) -> usize {
        let device = weighted(&mut self.rng, &DEVICES);
        let agents: Vec<(&'static str, u32)> = USER_AGENTS.iter().filter(|(d, _, _)| *d == device).map(|(_, ua, w)| (*ua, *w)).collect();
        let user_agent = weighted(&mut self.rng, &agents);
        let ip = if self.rng.random_bool(0.1) { IPv6().fake_with_rng(&mut self.rng) } else { IPv4().fake_with_rng(&mut self.rng) };
        let country = weighted(&mut self.rng, &COUNTRIES);
        let habit = weighted(&mut self.rng, &HABITS);
        let lapses_at = start + self.rng.random_range(7 * DAY..28 * DAY);
        let user = User {
            id: format!("U{:07}", self.users.len() + 1),
            device,
            country,
            user_agent,
            ip,
            habit,
            first_seen: start,
            lapses_at,
            bot: false,
        };
        self.users.push(user);
        self.users.len() - 1
    }

    /// Schedules the next return of `user` after a visit at `t`, as their habit says.
    fn plan_return(&mut self, user: usize, t: Millis) {
        let (habit, lapses_at) = (self.users[user].habit, self.users[user].lapses_at);
        let Some(mean_days) = habit.mean_days_between_visits() else { return };
        if self.returns.iter().any(|Reverse((_, u))| *u == user) {
            return; // already coming back
        }
        let due = t + (-(1.0 - self.rng.random::<f64>()).ln() * mean_days * DAY as f64) as Millis + 60_000;
        if habit != Habit::Lapsing || due <= lapses_at {
            self.returns.push(Reverse((due, user)));
        }
    }

    /// The habit of the shopper behind `user` (for tests of the model).
    #[cfg(test)]
    fn habit(&self, user: usize) -> Habit {
        self.users[user].habit
    }

    fn pick_product(&mut self) -> usize {
        let total = *self.popularity.last().expect("a catalogue");
        let x = self.rng.random::<f64>() * total;
        self.popularity.partition_point(|&c| c < x).min(self.products.len() - 1)
    }

    /// A product of `product`'s category (maybe itself), by popularity.
    fn pick_alike(&mut self, product: usize) -> usize {
        let (members, running) = &self.categories[self.products[product].category];
        let x = self.rng.random::<f64>() * running.last().expect("a category holds its product");
        members[running.partition_point(|&c| c < x).min(members.len() - 1)]
    }

    /// Simulates one visit starting at `start` and schedules its events.
    fn visit(&mut self, start: Millis) {
        if self.bots > 0.0 && self.rng.random_bool(self.bots) {
            return self.bot_visit(start);
        }
        let user = self.pick_user(start);
        self.plan_return(user, start);
        let cart_weight = self.users[user].habit.cart_weight();
        let referrer = weighted(&mut self.rng, &REFERRERS);
        let mut t = start;
        let mut cart: Vec<(usize, i64)> = Vec::new();
        let mut last_product = None;
        let visitor = Visitor { user, referrer, bot: None };
        // Landing: paid and search traffic often lands on a product.
        let mut state = if matches!(referrer, "ads" | "search") && self.rng.random_bool(0.5) {
            let p = self.pick_product();
            last_product = Some(p);
            visitor.view(self, t, p);
            EventType::ProductView
        } else {
            let page = if self.rng.random_bool(0.6) {
                "/".to_owned()
            } else {
                format!("/category/{}", CATEGORIES[self.rng.random_range(0..12)].0)
            };
            visitor.emit(self, (t, EventType::PageView, page, None, None, None));
            EventType::PageView
        };
        if self.rng.random_bool(0.40) {
            return; // bounce
        }
        for _ in 0..60 {
            t += self.think_time();
            use EventType::*;
            let choices: &[(Option<EventType>, u32)] = match state {
                PageView | Search => &[(Some(ProductView), 65), (Some(Search), 10), (Some(PageView), 15), (None, 10)],
                ProductView => {
                    &[(Some(AddToCart), cart_weight), (Some(ProductView), 48), (Some(PageView), 17), (Some(Search), 9), (None, 20)]
                }
                AddToCart => {
                    &[(Some(ProductView), 33), (Some(BeginCheckout), 42), (Some(RemoveFromCart), 6), (Some(PageView), 10), (None, 9)]
                }
                RemoveFromCart => &[(Some(ProductView), 50), (Some(BeginCheckout), 15), (None, 35)],
                BeginCheckout => &[(Some(Purchase), 70), (None, 30)],
                Purchase => &[(Some(ProductView), 20), (None, 80)],
            };
            let Some(next) = weighted(&mut self.rng, choices) else { return };
            state = next;
            match next {
                PageView => {
                    let page = if !cart.is_empty() && self.rng.random_bool(0.4) {
                        "/cart".to_owned()
                    } else {
                        format!("/category/{}", CATEGORIES[self.rng.random_range(0..12)].0)
                    };
                    visitor.emit(self, (t, PageView, page, None, None, None));
                }
                Search => {
                    let q = SEARCH_TERMS[self.rng.random_range(0..SEARCH_TERMS.len())];
                    visitor.emit(self, (t, Search, format!("/search?q={q}"), None, None, None));
                }
                ProductView => {
                    // Browsing: often another product of the category just looked at.
                    let p = match last_product {
                        Some(last) if self.rng.random_bool(0.6) => self.pick_alike(last),
                        _ => self.pick_product(),
                    };
                    last_product = Some(p);
                    visitor.view(self, t, p);
                }
                AddToCart => {
                    let p = last_product.expect("add_to_cart follows a product view");
                    let q = if self.rng.random_bool(0.85) { 1 } else { self.rng.random_range(2..5) };
                    cart.push((p, q));
                    visitor.emit(self, (t, AddToCart, format!("/product/{}", self.products[p].id), Some(p), Some(q), None));
                    // Often an accessory of it too, looked at first.
                    let accessories = &self.products[p].accessories;
                    if !accessories.is_empty() && self.rng.random_bool(0.45) {
                        let a = accessories[self.rng.random_range(0..accessories.len())];
                        t += self.think_time();
                        visitor.view(self, t, a);
                        t += self.think_time();
                        last_product = Some(a);
                        cart.push((a, 1));
                        visitor.emit(self, (t, AddToCart, format!("/product/{}", self.products[a].id), Some(a), Some(1), None));
                    }
                }
                RemoveFromCart => {
                    let (p, q) = cart.swap_remove(self.rng.random_range(0..cart.len()));
                    visitor.emit(self, (t, RemoveFromCart, "/cart".to_owned(), Some(p), Some(q), None));
                }
                BeginCheckout => {
                    if cart.is_empty() {
                        return;
                    }
                    visitor.emit(self, (t, BeginCheckout, "/checkout".to_owned(), None, None, None));
                }
                Purchase => {
                    let order: String = UUIDv4.fake_with_rng(&mut self.rng);
                    for (line, (p, q)) in std::mem::take(&mut cart).into_iter().enumerate() {
                        let confirmation = "/checkout/confirmation".to_owned();
                        visitor.emit(self, (t + line as Millis, Purchase, confirmation, Some(p), Some(q), Some(order.clone())));
                    }
                }
            }
        }
    }

    /// A bot's visit starting at `start`, by a new user who never comes back. Each bot
    /// draws its own pace (the mean time between its requests) and size.
    fn bot_visit(&mut self, start: Millis) {
        use EventType::*;
        let user = self.new_user(start);
        self.users[user].habit = Habit::OneTime;
        self.users[user].bot = true;
        let kind = BotKind::ALL[self.rng.random_range(0..BotKind::ALL.len())];
        let visitor = Visitor { user, referrer: weighted(&mut self.rng, &REFERRERS), bot: Some(kind) };
        let mut t = start;
        let mut next = |shop: &mut Shop, pace: Millis| {
            t += pace / 2 + shop.rng.random_range(0..pace);
            t
        };
        match kind {
            BotKind::Scraper => {
                let pace = self.rng.random_range(300..4_000);
                visitor.emit(self, (start, PageView, "/".to_owned(), None, None, None));
                for _ in 0..self.rng.random_range(30..150) {
                    let t = next(self, pace);
                    if self.rng.random_bool(0.8) {
                        // Breadth: any product, not the popular ones.
                        let p = self.rng.random_range(0..self.products.len());
                        visitor.view(self, t, p);
                    } else {
                        let page = format!("/category/{}", CATEGORIES[self.rng.random_range(0..CATEGORIES.len())].0);
                        visitor.emit(self, (t, PageView, page, None, None, None));
                    }
                }
            }
            BotKind::CardTester => {
                let pace = self.rng.random_range(1_500..8_000);
                let product = self.cheap_product();
                visitor.view(self, start, product);
                for _ in 0..self.rng.random_range(5..25) {
                    let page = format!("/product/{}", self.products[product].id);
                    let t = next(self, pace);
                    visitor.emit(self, (t, AddToCart, page, Some(product), Some(1), None));
                    let t = next(self, pace);
                    visitor.emit(self, (t, BeginCheckout, "/checkout".to_owned(), None, None, None));
                    // Most cards are declined: no purchase follows.
                    if self.rng.random_bool(0.6) {
                        let order: String = UUIDv4.fake_with_rng(&mut self.rng);
                        let t = next(self, pace);
                        visitor.emit(self, (t, Purchase, "/checkout/confirmation".to_owned(), Some(product), Some(1), Some(order)));
                    }
                }
            }
            BotKind::CartStuffer => {
                let pace = self.rng.random_range(1_000..6_000);
                visitor.emit(self, (start, PageView, "/".to_owned(), None, None, None));
                for _ in 0..self.rng.random_range(15..60) {
                    let p = self.pick_product();
                    if self.rng.random_bool(0.5) {
                        let t = next(self, pace);
                        visitor.view(self, t, p);
                    }
                    let t = next(self, pace);
                    let quantity = self.rng.random_range(1..10);
                    visitor.emit(self, (t, AddToCart, format!("/product/{}", self.products[p].id), Some(p), Some(quantity), None));
                    if self.rng.random_bool(0.1) {
                        let t = next(self, pace);
                        visitor.emit(self, (t, RemoveFromCart, "/cart".to_owned(), Some(p), Some(quantity), None));
                    }
                }
            }
        }
    }

    /// A product under 10.00, or the cheapest of a few tries.
    fn cheap_product(&mut self) -> usize {
        let mut best = self.rng.random_range(0..self.products.len());
        for _ in 0..50 {
            if self.products[best].price_cents < 1_000 {
                break;
            }
            let other = self.rng.random_range(0..self.products.len());
            if self.products[other].price_cents < self.products[best].price_cents {
                best = other;
            }
        }
        best
    }

    /// Seconds to a minute between clicks; now and then a pause long enough to start a
    /// new session (coffee, a meeting) before the shopper comes back.
    fn think_time(&mut self) -> Millis {
        if self.rng.random_bool(0.015) {
            return self.rng.random_range(31 * 60_000..120 * 60_000);
        }
        let mean = 25_000.0;
        (-(1.0 - self.rng.random::<f64>()).ln() * mean) as Millis + 1000
    }
}

/// Traffic relative to the daily average by UTC hour: quiet nights, evening peak.
fn daily_shape(t: Millis) -> f64 {
    let hour = t.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    1.0 + 0.6 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).sin()
}

fn weighted<T: Copy>(rng: &mut SmallRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use super::*;

    const START: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    /// Six weeks of a small shop (0.1 events/s: about 8,600 a day).
    fn six_weeks() -> (Shop, Vec<SimEvent>) {
        let mut shop = Shop::new(11, START, 0.1, false);
        let mut events = Vec::new();
        loop {
            let e = shop.next_event();
            if e.time >= START + 42 * DAY {
                return (shop, events);
            }
            events.push(e);
        }
    }

    #[test]
    fn shoppers_come_back_as_their_habits_say() {
        let (shop, events) = six_weeks();
        // Per user: the days with a visit and the days with a purchase.
        let mut visit_days: HashMap<usize, BTreeSet<Millis>> = HashMap::new();
        let mut purchase_days: HashMap<usize, BTreeSet<Millis>> = HashMap::new();
        for e in &events {
            visit_days.entry(e.user).or_default().insert((e.time - START) / DAY);
            if e.event_type == EventType::Purchase {
                purchase_days.entry(e.user).or_default().insert((e.time - START) / DAY);
            }
        }
        let shop = &shop;
        let of = |habit: Habit| visit_days.keys().copied().filter(move |u| shop.habit(*u) == habit).collect::<Vec<usize>>();
        let mean = |users: Vec<usize>, days: &HashMap<usize, BTreeSet<Millis>>| {
            users.iter().map(|u| days.get(u).map_or(0, BTreeSet::len)).sum::<usize>() as f64 / users.len().max(1) as f64
        };
        // Shoppers who arrived in the first week, seen over the following five.
        let early = |u: &usize| visit_days[u].first().is_some_and(|d| *d < 7);
        let loyal: Vec<usize> = of(Habit::Loyal).into_iter().filter(early).collect();
        let one_time: Vec<usize> = of(Habit::OneTime).into_iter().filter(early).collect();
        let lapsing: Vec<usize> = of(Habit::Lapsing).into_iter().filter(early).collect();
        assert!(loyal.len() > 200 && one_time.len() > 800, "{} loyal, {} one-time", loyal.len(), one_time.len());
        let (loyal_visits, one_time_visits) = (mean(loyal.clone(), &visit_days), mean(one_time.clone(), &visit_days));
        assert!(loyal_visits > 8.0, "loyal shoppers visit on many days: {loyal_visits:.1}");
        assert!(one_time_visits < 1.3, "one-time shoppers hardly come back: {one_time_visits:.1}");
        let (loyal_buys, one_time_buys) = (mean(loyal, &purchase_days), mean(one_time, &purchase_days));
        assert!(loyal_buys > 4.0 * one_time_buys, "loyal shoppers buy on more days: {loyal_buys:.2} against {one_time_buys:.2}");
        // Lapsing shoppers come back for weeks, then stop: none is seen a week after their lapse.
        let returned = lapsing.iter().filter(|u| visit_days[*u].len() > 2).count();
        assert!(returned * 2 > lapsing.len(), "most lapsing shoppers come back at first: {returned} of {}", lapsing.len());
        for u in &lapsing {
            let last_day = *visit_days[u].last().unwrap();
            let lapsed = (shop.users[*u].lapses_at - START) / DAY;
            assert!(last_day <= lapsed + 7, "user {u} seen on day {last_day}, lapsed on day {lapsed}");
        }
    }

    #[test]
    fn a_session_views_products_of_one_category_together() {
        let (shop, events) = six_weeks();
        // Each product view after another in the same visit (same user, under 30 minutes).
        let mut last: HashMap<usize, (Millis, usize)> = HashMap::new();
        let (mut following, mut alike) = (0, 0);
        for e in events.iter().filter(|e| e.event_type == EventType::ProductView) {
            let p = e.product.unwrap();
            if let Some((t, q)) = last.insert(e.user, (e.time, p)) {
                if e.time - t < 30 * 60_000 {
                    following += 1;
                    alike += usize::from(shop.products[p].category == shop.products[q].category);
                }
            }
        }
        // At random, by popularity, a twelfth to a fifth would share the category.
        assert!(following > 10_000, "{following} product views follow another");
        let share = alike as f64 / following as f64;
        assert!(share > 0.5, "a view follows one of its category {:.0} % of the time", share * 100.0);
    }

    #[test]
    fn accessories_are_bought_with_their_product() {
        let (shop, events) = six_weeks();
        let mut orders: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.event_type == EventType::Purchase) {
            orders.entry(e.order_id.as_deref().unwrap()).or_default().insert(e.product.unwrap());
        }
        let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
        for products in orders.values() {
            for &p in products {
                for &q in products {
                    if shop.products[p].accessories.contains(&q) {
                        *pairs.entry((p, q)).or_default() += 1;
                    }
                }
            }
        }
        let repeated = pairs.values().filter(|n| **n >= 2).count();
        assert!(repeated >= 20, "accessory pairs bought together in two orders or more: {repeated}");
        let with_accessory =
            orders.values().filter(|ps| ps.iter().any(|p| ps.iter().any(|q| shop.products[*p].accessories.contains(q)))).count();
        assert!(with_accessory * 20 > orders.len(), "{with_accessory} of {} orders hold a product and its accessory", orders.len());
    }

    /// One day of a shop at 1 event/s where 5 % of visits are bots.
    fn day_with_bots() -> (Shop, Vec<SimEvent>) {
        let mut shop = Shop::new(5, START, 1.0, false).with_bots(0.05);
        let mut events = Vec::new();
        loop {
            let e = shop.next_event();
            if e.time >= START + DAY {
                return (shop, events);
            }
            events.push(e);
        }
    }

    #[test]
    fn bots_are_a_share_of_sessions_each_kind_with_its_own_behaviour() {
        let (shop, events) = day_with_bots();
        assert!((77_760..=95_040).contains(&events.len()), "the rate holds with bots: {} events in a day at 1/s", events.len());
        // Sessions: each user's events split at 30 minutes.
        let mut by_user: BTreeMap<usize, Vec<&SimEvent>> = BTreeMap::new();
        for e in &events {
            by_user.entry(e.user).or_default().push(e);
        }
        let mut sessions: Vec<Vec<&SimEvent>> = Vec::new();
        for evs in by_user.values() {
            for (i, e) in evs.iter().enumerate() {
                if i == 0 || e.time - evs[i - 1].time >= 30 * 60_000 {
                    sessions.push(Vec::new());
                }
                sessions.last_mut().unwrap().push(e);
            }
        }
        let kind_of = |s: &Vec<&SimEvent>| s[0].bot;
        assert!(sessions.iter().all(|s| s.iter().all(|e| e.bot == kind_of(s))), "a session is all bot or all human");
        let bots = sessions.iter().filter(|s| kind_of(s).is_some()).count();
        let share = bots as f64 / sessions.len() as f64;
        assert!((0.035..0.065).contains(&share), "{bots} of {} sessions are bots'", sessions.len());
        let median_gap = |s: &Vec<&SimEvent>| {
            let mut gaps: Vec<Millis> = s.windows(2).map(|w| w[1].time - w[0].time).collect();
            gaps.sort_unstable();
            gaps.get(gaps.len() / 2).copied().unwrap_or(Millis::MAX)
        };
        let count = |s: &Vec<&SimEvent>, t: EventType| s.iter().filter(|e| e.event_type == t).count();
        let products = |s: &Vec<&SimEvent>| s.iter().filter_map(|e| e.product).collect::<BTreeSet<_>>().len();
        for kind in BotKind::ALL {
            // Whole visits: not those the end of the day cuts short.
            let of_kind: Vec<&Vec<&SimEvent>> =
                sessions.iter().filter(|s| kind_of(s) == Some(kind) && s[0].time < START + DAY - 3_600_000).collect();
            assert!(of_kind.len() >= 30, "{} {kind:?} sessions", of_kind.len());
            for s in of_kind {
                match kind {
                    BotKind::Scraper => {
                        let (gap, n) = (median_gap(s), products(s));
                        assert!(gap < 5_000 && n >= 15, "a scraper is fast and broad: {gap} ms, {n} products");
                        assert_eq!(count(s, EventType::AddToCart) + count(s, EventType::Purchase), 0);
                    }
                    BotKind::CardTester => {
                        let (checkouts, n) = (count(s, EventType::BeginCheckout), products(s));
                        assert!(checkouts >= 5 && n == 1, "a card tester repeats one product: {checkouts} checkouts, {n} products");
                        assert!(
                            s.iter()
                                .filter(|e| e.event_type == EventType::Purchase)
                                .all(|e| e.quantity == Some(1) && shop.products[e.product.unwrap()].price_cents < 2_000),
                            "small purchases"
                        );
                    }
                    BotKind::CartStuffer => {
                        assert!(count(s, EventType::AddToCart) >= 15, "a cart stuffer fills the cart");
                        assert_eq!(count(s, EventType::BeginCheckout) + count(s, EventType::Purchase), 0, "and never pays");
                    }
                }
            }
        }
        // Shoppers are slower, and nothing in a bot's fields sets it apart.
        let mut human_gaps: Vec<Millis> = sessions.iter().filter(|s| kind_of(s).is_none() && s.len() > 2).map(median_gap).collect();
        human_gaps.sort_unstable();
        assert!(human_gaps[human_gaps.len() / 2] > 10_000, "shoppers take their time");
        let agents =
            |bot: bool| events.iter().filter(|e| e.bot.is_some() == bot).map(|e| shop.users[e.user].user_agent).collect::<BTreeSet<_>>();
        assert!(agents(true).is_subset(&agents(false)), "bots use shoppers' user agents");
    }

    #[test]
    fn without_bots_the_stream_is_as_before() {
        let mut plain = Shop::new(9, START, 1.0, false);
        let mut none = Shop::new(9, START, 1.0, false).with_bots(0.0);
        for _ in 0..2_000 {
            assert_eq!(plain.next_event().event_id, none.next_event().event_id);
        }
    }
}
