# Services the serving tests need, from Debian's packages: Chromium, and a throwaway PostgreSQL
# cluster (unix socket only, in a temporary folder, stopped and removed when the caller exits).
# Sourced by .ci/run; exports KINEMA_TEST_POSTGRES_URL and KINEMA_TEST_CHROMIUM.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
need=()
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "+ apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
pg_dir=$(mktemp -d)
as_pg=()
if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root
  chown postgres: "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U kinema -A trust -E UTF8 --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-k $pg_dir -c listen_addresses='' -c fsync=off -c max_connections=200" start >/dev/null
stop_postgres() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$pg_dir"
}
trap stop_postgres EXIT
export KINEMA_TEST_POSTGRES_URL="postgresql+psycopg://kinema@/postgres?host=$pg_dir"
KINEMA_TEST_CHROMIUM=$(command -v chromium)
export KINEMA_TEST_CHROMIUM
echo "+ PostgreSQL at $pg_dir, Chromium at $KINEMA_TEST_CHROMIUM"
