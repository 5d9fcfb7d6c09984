#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (the store's PostgreSQL backend). Idempotent.
#
#   scripts/postgres.sh start [DIR]   starts a cluster in DIR (a new temporary directory if not
#                                     given; an existing cluster there is reused) and prints its
#                                     URL, postgres://portcullis:PASSWORD@127.0.0.1:PORT/portcullis,
#                                     also kept in DIR/url
#   scripts/postgres.sh stop DIR      stops it and removes DIR (an empty DIR is just removed)
#
# Installs Debian's `postgresql` with apt-get if initdb and pg_ctl are not found (on PATH or
# under /usr/lib/postgresql/<version>/bin). PostgreSQL refuses to run as root, so as root the
# cluster runs as the system user `portcullis-pg` (created if absent); otherwise as the
# current user. It listens on 127.0.0.1 on a free port (password authentication) and on a Unix
# socket in DIR. fsync is off: the cluster is thrown away, and the store's durability under
# test is SQLite's (kill -9); PostgreSQL's own is not what these tests check. PG_DURABLE=1
# keeps PostgreSQL's durable defaults (fsync, synchronous_commit, full_page_writes on), for
# benchmarks of commits.
set -euo pipefail
pg_user=portcullis-pg # the system user the server runs as, when we are root
role=portcullis       # the database role and database the URL names
database=portcullis

die() { echo "postgres.sh: $*" >&2; exit 1; }

# The directory holding initdb and pg_ctl, newest version first.
bin_dir() {
  local d
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return; fi
  done
  return 1
}

install_postgres() {
  local apt
  if ((EUID == 0)); then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    apt=(sudo -n env DEBIAN_FRONTEND=noninteractive apt-get)
  else
    die "PostgreSQL (initdb, pg_ctl) is not installed, and installing it needs root: run \`apt-get install postgresql\` as root, or put initdb and pg_ctl on PATH"
  fi
  command -v apt-get >/dev/null || die "PostgreSQL (initdb, pg_ctl) is not installed and there is no apt-get: install PostgreSQL and put initdb and pg_ctl on PATH"
  echo "postgres.sh: installing Debian's postgresql" >&2
  # A fresh system has no package lists: update only when the first try fails.
  "${apt[@]}" install -y -q --no-install-recommends postgresql >&2 \
    || { "${apt[@]}" update -q >&2 && "${apt[@]}" install -y -q --no-install-recommends postgresql >&2; } \
    || die "\`apt-get install postgresql\` failed"
}

# Runs a command as the cluster's owner.
as_owner() {
  if ((EUID == 0)); then runuser -u "$pg_user" -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 40000))
}

running() { # dir
  [[ -f $1/url && -f $1/data/postmaster.pid ]] && as_owner "$bin/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

start() {
  local dir=${1:-} port password url attempt
  bin=$(bin_dir) || { install_postgres; bin=$(bin_dir) || die "installed postgresql, but found no initdb and pg_ctl"; }
  if [[ -z $dir ]]; then dir=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-pg.XXXXXX"); fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ $dir != *[[:space:]]* ]] || die "the cluster directory's path must not contain spaces: \`$dir\`"
  if running "$dir"; then cat "$dir/url"; return; fi
  if [[ -z "$(ls -A "$dir")" ]]; then touch "$dir/.portcullis-pg"; fi
  chmod 700 "$dir" # the Unix socket trusts whoever reaches it
  [[ -f $dir/.portcullis-pg ]] || die "\`$dir\` is neither empty nor a cluster made by this script"
  if ((EUID == 0)); then
    id -u "$pg_user" >/dev/null 2>&1 \
      || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$pg_user"
    chown -R "$pg_user:" "$dir"
    runuser -u "$pg_user" -- test -w "$dir" \
      || die "the user \`$pg_user\` cannot write \`$dir\` (is a parent directory closed to it?)"
  fi
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077 && echo "$password" >"$dir/password")
    ((EUID != 0)) || chown "$pg_user:" "$dir/password"
    as_owner "$bin/initdb" -D "$dir/data" -U "$role" --pwfile="$dir/password" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  password=$(cat "$dir/password")
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [[ "${PG_DURABLE:-0}" == 1 ]] && durability=""
  for attempt in 1 2 3 4 5; do # a port found free may be taken before the server binds it
    port=$(free_port)
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $dir $durability" \
      start >/dev/null; then
      break
    fi
    port=
  done
  [[ -n $port ]] || { tail -n 20 "$dir/server.log" >&2; die "the server did not start"; }
  # Over the Unix socket, where the cluster's owner is trusted.
  as_owner "$bin/psql" -h "$dir" -p "$port" -U "$role" -d postgres -qAt \
    -c "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1 \
    || as_owner "$bin/createdb" -h "$dir" -p "$port" -U "$role" "$database"
  url="postgres://$role:$password@127.0.0.1:$port/$database"
  (umask 077 && echo "$url" >"$dir/url")
  echo "$url"
  echo "postgres.sh: PostgreSQL $("$bin/pg_ctl" --version | sed -E 's/^[^0-9]*([0-9.]+).*/\1/') in $dir; stop it with: $0 stop $dir" >&2
}

stop() {
  local dir=${1:?usage: postgres.sh stop DIR}
  [[ -d $dir ]] || return 0
  if [[ -z "$(ls -A "$dir")" ]]; then rmdir "$dir"; return; fi # never started
  [[ -f $dir/.portcullis-pg ]] || die "\`$dir\` is not a cluster made by this script"
  if [[ -f $dir/data/postmaster.pid ]] && bin=$(bin_dir); then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
