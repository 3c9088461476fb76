# shellcheck shell=bash
# start_throwaway_postgres: a PostgreSQL cluster in a temp dir on a free loopback port, owned
# by the `postgres` user, stopped when the calling shell exits. Exports
# LORA_FORECAST_TEST_POSTGRES_URL on success; returns non-zero (and changes nothing) otherwise.
start_throwaway_postgres() {
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
                >/dev/null 2>&1 || return 1
        else
            return 1
        fi
    fi
    local bin port dir
    bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
    id postgres >/dev/null 2>&1 || return 1
    port=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    dir=$(mktemp -d)
    chown postgres "$dir"
    su postgres -c "$bin/initdb -D $dir/data -A trust -U postgres" >/dev/null 2>&1 || return 1
    su postgres -c "$bin/pg_ctl -D $dir/data -w -l $dir/log -o '-p $port -k $dir -c listen_addresses=127.0.0.1' start" \
        >/dev/null 2>&1 || return 1
    # shellcheck disable=SC2064
    trap "su postgres -c '$bin/pg_ctl -D $dir/data -m immediate stop' >/dev/null 2>&1 || true" EXIT
    export LORA_FORECAST_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') for the ledger tests on port $port"
}
