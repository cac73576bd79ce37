//! Sources: where messages come from. [`file`] reads JSON Lines; each source hands the
//! processor raw messages with their position, and knows nothing of their meaning.

pub mod file;
