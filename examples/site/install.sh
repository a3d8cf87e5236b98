#!/bin/bash
# Install the site on a Debian server with systemd, as root. Idempotent.
#
#   - users: the site's system user `site` (home /srv/site, no login) and the
#     group `deploy` (add the people who deploy: usermod -aG deploy alice);
#   - /srv/site: the site's files from this directory, site:deploy 2775, so
#     that deploy members can put new code there; /srv/site/data (redis's
#     snapshot, beat's schedule) site-only, 0700;
#   - /srv/site/venv: gunicorn and celery[redis] (requirements.txt);
#   - pidone-site.service in /etc/systemd/system, enabled (started at boot).
#
# pidone itself is expected in /opt/pidone (PIDONE_VENV), one install for
# every site on the server:
#   python3 -m venv /opt/pidone && /opt/pidone/bin/pip install pidone
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SITE_DIR=/srv/site
SITE_USER=site
DEPLOY_GROUP=deploy
PIDONE_VENV=${PIDONE_VENV:-/opt/pidone}
UNIT=pidone-site.service
FILES="Procfile pidone.toml redis.conf app.py tasks.py requirements.txt"

say() { echo "site-install: $*"; }

[ "$(id -u)" = 0 ] || { say "must run as root" >&2; exit 1; }
[ -x "$PIDONE_VENV/bin/pidone" ] || {
    say "no pidone in $PIDONE_VENV: python3 -m venv $PIDONE_VENV && $PIDONE_VENV/bin/pip install pidone" >&2
    exit 1
}

getent group "$DEPLOY_GROUP" >/dev/null || { say "creating group $DEPLOY_GROUP"; groupadd --system "$DEPLOY_GROUP"; }
id -u "$SITE_USER" >/dev/null 2>&1 || {
    say "creating system user $SITE_USER"
    useradd --system --user-group --no-create-home --home-dir "$SITE_DIR" \
        --shell /usr/sbin/nologin "$SITE_USER"
}

install -d -o "$SITE_USER" -g "$DEPLOY_GROUP" -m 2775 "$SITE_DIR"
install -d -o "$SITE_USER" -g "$SITE_USER" -m 0700 "$SITE_DIR/data"
for f in $FILES; do
    install -o "$SITE_USER" -g "$DEPLOY_GROUP" -m 0664 "$HERE/$f" "$SITE_DIR/$f"
done

# The venv: made again only when requirements.txt changed.
VENV=$SITE_DIR/venv
want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]; then
    say "installing requirements.txt into $VENV"
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
    "$VENV/bin/python" -m compileall -q "$VENV/lib" >/dev/null
    echo "$want" >"$VENV/.requirements"
fi
chmod -R a+rX,go-w "$VENV"

# What pidone run would refuse, refused now: checked as the unit runs it (the
# site's user, its group and deploy, in the site's directory, the unit's PATH).
setpriv --reuid "$SITE_USER" --regid "$SITE_USER" --groups "$DEPLOY_GROUP" \
    env -C "$SITE_DIR" PATH="$VENV/bin:/usr/local/bin:/usr/bin:/bin" "$PIDONE_VENV/bin/pidone" check >/dev/null

install -m 0644 "$HERE/$UNIT" "/etc/systemd/system/$UNIT"
if [ -d /run/systemd/system ]; then  # systemd is running (not an image build)
    systemctl daemon-reload
fi
systemctl enable "$UNIT" 2>&1 | grep -v '^Created symlink' || true
say "installed; start it with: systemctl start ${UNIT%.service}"
