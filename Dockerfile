# clickflow's binary on a slim Debian. Build: docker build -t clickflow .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin clickflow

FROM debian:bookworm-slim
COPY --from=build /src/target/release/clickflow /usr/local/bin/clickflow
ENTRYPOINT ["clickflow"]
