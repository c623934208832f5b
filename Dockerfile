# kratos-jit: a release build on the Rust toolchain the project is developed with, run as a
# non-root user on Debian slim.
#
#   docker build -t kratos-jit .
#   docker run --rm -p 127.0.0.1:4480:4480 -v "$PWD/mappers:/etc/kratos-jit/mappers:ro" \
#     -e KRATOS_JIT__KRATOS__ADMIN_URL=http://kratos:4434 -e KRATOS_JIT__HOOKS__SECRETS=... kratos-jit
#
# Both stages are Debian 12 (bookworm): the binary links the build stage's glibc, so the runtime
# must not be older.

FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: a source change then rebuilds only kratos-jit itself.
# The stub targets mirror the ones Cargo.toml declares (lib, bin, the criterion bench).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/mapper.rs \
    && cargo build --release --locked \
    && rm -rf src benches

COPY src ./src
COPY benches ./benches
# The built-in identity schema is compiled in (include_str! in src/schema.rs).
COPY deploy/kratos/identity.schema.json ./deploy/kratos/identity.schema.json
# Make the real sources newer than the stub build, so Cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/kratos-jit /usr/local/bin/kratos-jit

FROM debian:bookworm-slim
# TLS roots are compiled in (rustls with webpki roots); nothing else is needed at run time.
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin kratos-jit
COPY --from=build /usr/local/bin/kratos-jit /usr/local/bin/kratos-jit

# A container must listen on all its interfaces to be reachable; publish the port on loopback
# (or keep it on an internal network) instead. Mount the providers (mappers/) at the path below.
ENV KRATOS_JIT__LISTEN=0.0.0.0:4480 \
    KRATOS_JIT__PROVIDERS=/etc/kratos-jit/mappers
EXPOSE 4480

USER kratos-jit
ENTRYPOINT ["kratos-jit"]
CMD ["serve", "--log-format", "json"]
