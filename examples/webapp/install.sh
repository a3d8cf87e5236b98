#!/bin/bash
# Install what the webapp example needs, as root, on Debian 12. Idempotent and
# fast when nothing changed (about a second), so `make demo` and `make test`
# call it every time:
#
#   - Debian packages: redis-server, nginx, and what builds uwsgi (gcc,
#     python3-dev, libpcre2-dev) and python-prctl (libcap-dev). No daemon of
#     theirs is left running: pidone runs redis, the runner runs nginx.
#   - users: `redis` (made by Debian's package), `app` for uwsgi, `celery`
#     for the worker; nginx's workers run as Debian's `www-data`.
#   - a venv every user can read, made from Debian's /usr/bin/python3 (a venv
#     under /root is out of reach of the app's users): flask, celery[redis],
#     uwsgi, gunicorn (examples/site/requirements.txt: the tests run real
#     gunicorn and celery as other users), and pidone itself from this checkout.
#
# Each step keeps a stamp holding a hash of its inputs, and runs again only
# when they change (requirements.txt, or pidone's sources).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${WEBAPP_VENV:-/opt/pidone-webapp-venv}
# The site example's (gunicorn, celery[redis]) go into the same venv.
SITE_REQUIREMENTS=$REPO/examples/site/requirements.txt
PACKAGES="redis-server redis-tools nginx libpcre2-dev libcap-dev python3-dev python3-venv
  gcc util-linux iproute2 procps"
# The app's users. redis comes with Debian's package; www-data with Debian.
APP_USERS="app celery"

say() { echo "webapp-install: $*"; }

[ "$(id -u)" = 0 ] || { say "must run as root (it installs Debian packages and users)" >&2; exit 1; }

# pids of running programs whose executable is one of "$@"
pids_of() {
    local pid exe
    for pid in /proc/[0-9]*; do
        exe=$(readlink "$pid/exe" 2>/dev/null) || continue
        for want in "$@"; do
            [ "$exe" = "$want" ] && echo "${pid#/proc/}"
        done
    done
    return 0
}

install_packages() {
    local missing="" p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    say "installing Debian packages:$missing"
    local daemons="/usr/sbin/nginx /usr/bin/redis-server /usr/bin/redis-check-rdb"
    local before
    before=$(pids_of $daemons | sort)
    # Tell invoke-rc.d not to start the packages' services (policy-rc.d exit
    # 101 = "action forbidden"), unless the machine already says so itself.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, by pidone webapp install.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local status=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $missing >/dev/null; } || status=$?
    [ -z "$made_policy" ] || rm -f "$policy"
    [ "$status" = 0 ] || { say "apt-get install failed (status $status)" >&2; exit 1; }
    # Whatever daemon the install started anyway (a policy-rc.d that lets it
    # through, a postinst that ignores it) goes: only the pids that were not
    # there before the install, each by its pid.
    local pid
    for pid in $(comm -13 <(echo "$before") <(pids_of $daemons | sort)); do
        say "stopping $(readlink /proc/$pid/exe 2>/dev/null) (pid $pid) started by its package"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        [ -z "$(comm -13 <(echo "$before") <(pids_of $daemons | sort))" ] && break
        sleep 0.1
    done
    for pid in $(comm -13 <(echo "$before") <(pids_of $daemons | sort)); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

make_users() {
    local user
    for user in $APP_USERS; do
        id -u "$user" >/dev/null 2>&1 && continue
        say "creating system user $user"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$user"
    done
    id -u redis >/dev/null 2>&1 || {
        say "creating system user redis (Debian's redis-server package did not)"
        useradd --system --user-group --no-create-home --home-dir /var/lib/redis \
            --shell /usr/sbin/nologin redis
    }
}

# hash of the files named, or of everything under the directories named, by
# their names relative to their parents: the same in every checkout
hash_of() {
    local arg
    for arg in "$@"; do
        (cd "$(dirname "$arg")" && find "$(basename "$arg")" -type f ! -name '*.pyc' -print0 \
            | sort -z | xargs -0 sha256sum)
    done | sha256sum | cut -d' ' -f1
}

# pip, without the warnings this machine's pip.conf adds for each package
pip_install() {
    "$VENV/bin/pip" install -q --disable-pip-version-check "$@" \
        2> >(grep -v '^WARNING: Location .* is ignored' >&2)
}

make_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV from /usr/bin/python3"
        /usr/bin/python3 -m venv "$VENV"
        pip_install -U pip
    fi
    local want
    want=$(hash_of "$HERE/requirements.txt" "$SITE_REQUIREMENTS")
    if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]; then
        say "installing requirements.txt and the site's into $VENV"
        pip_install -r "$HERE/requirements.txt" -r "$SITE_REQUIREMENTS"
        # uwsgi is built from source; a wheel pip built earlier without
        # libpcre2-dev (in its cache) lacks uwsgi's internal routing.
        if ! "$VENV/bin/uwsgi" --help | grep -q -- '--route '; then
            say "building uwsgi from source with PCRE (internal routing): a minute"
            pip_install --force-reinstall --no-deps --no-cache-dir --no-binary uwsgi \
                "uwsgi==$("$VENV/bin/uwsgi" --version)"
        fi
        echo "$want" >"$VENV/.requirements"
    fi
    # pidone itself, from a copy of this checkout (a build in place would
    # leave build/ behind in the work tree); reinstalled whenever its sources
    # change, so the demo and the tests always run the code checked out.
    want=$(hash_of "$REPO/pyproject.toml" "$REPO/src/pidone")
    if [ "$(cat "$VENV/.pidone" 2>/dev/null)" != "$want" ]; then
        say "installing pidone from $REPO into $VENV"
        local tmp
        tmp=$(mktemp -d)
        cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/src" "$tmp/"
        rm -rf "$tmp"/src/*.egg-info
        if ! { pip_install "$tmp" && pip_install --force-reinstall --no-deps "$tmp"; }; then
            rm -rf "$tmp"
            exit 1
        fi
        rm -rf "$tmp"
        echo "$want" >"$VENV/.pidone"
    fi
    chmod -R a+rX "$VENV"
}

check() {
    local missing=""
    for f in /usr/bin/redis-server /usr/sbin/nginx "$VENV/bin/uwsgi" "$VENV/bin/celery" \
        "$VENV/bin/pidone" "$VENV/bin/flask" "$VENV/bin/gunicorn"; do
        [ -x "$f" ] || missing="$missing $f"
    done
    [ -z "$missing" ] || { say "still missing after the install:$missing" >&2; exit 1; }
}

install_packages
make_users
make_venv
check
