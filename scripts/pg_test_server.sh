#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the bricks tests (work-queue mode).
#   eval "$(scripts/pg_test_server.sh start)"   # exports BRICKLAB_TEST_PG_URL and BRICKLAB_TEST_PG_DIR
#   scripts/pg_test_server.sh stop "$BRICKLAB_TEST_PG_DIR"
# The cluster lives in a temp folder owned by the `postgres` user (initdb refuses to run as root),
# listens on 127.0.0.1 on a free port with trust authentication, and is deleted on stop.
set -euo pipefail
action="${1:-}"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg_test_server: PostgreSQL server binaries not found under /usr/lib/postgresql (apt package postgresql)" >&2
  exit 1
fi
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$action" in
  start)
    dir="$(mktemp -d /tmp/bricklab-pg.XXXXXX)"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50" start >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
    echo "export BRICKLAB_TEST_PG_URL='postgresql://postgres@127.0.0.1:$port/postgres'"
    echo "export BRICKLAB_TEST_PG_DIR='$dir'"
    ;;
  stop)
    dir="${2:-${BRICKLAB_TEST_PG_DIR:-}}"
    case "$dir" in /tmp/bricklab-pg.*) ;; *) echo "pg_test_server: refusing to stop '$dir'" >&2; exit 1 ;; esac
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
