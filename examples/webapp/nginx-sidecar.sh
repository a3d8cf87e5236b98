#!/bin/bash
# The nginx "sidecar container", without a container engine.
#
#   unshare --pid --fork --mount --propagation private -- nginx-sidecar.sh ROOT VOLUME CONF
#
# run.py runs this as PID 1 of a new PID namespace and a new, private mount
# namespace. It builds a root of its own on a tmpfs at ROOT (the way a
# container gets its image's root), pivots into it, and executes nginx as
# www-data. What nginx can see afterwards is only:
#
#   /usr, /etc          the host's, read-only (the "image": nginx, its libraries,
#                       /etc/nginx/{mime.types,uwsgi_params}, www-data's passwd entry)
#   /bin /lib /lib64 /sbin  Debian's merged-/usr symlinks into /usr
#   /config/nginx.conf  a copy of CONF
#   /tmp                its scratch space (pid file, temp files), on the tmpfs
#   /dev/{null,zero,random,urandom}, and a /proc of its own PID namespace
#   /run/pidone-webapp  VOLUME, bind-mounted read-write: the one directory it
#                       shares with the app, holding uwsgi's socket
#
# Not the app's code, not its venv, not redis's data, not /root, /home, /var
# or the rest of /run, and no process of the app's (its own PID namespace).
# It shares the network namespace with the app, as the containers of a pod
# do: nginx listens on 127.0.0.1:8080.
set -euo pipefail

root=$1 volume=$2 conf=$3

mount -t tmpfs -o mode=0755,size=16m,nosuid,nodev sidecar-root "$root"
mkdir -p "$root"/{usr,etc,config,dev,proc,tmp/nginx,run/pidone-webapp}

for dir in usr etc; do
    mount --bind -o ro "/$dir" "$root/$dir"
done
for dir in bin lib lib64 sbin; do
    if [ -L "/$dir" ]; then
        ln -s "$(readlink "/$dir")" "$root/$dir"
    elif [ -d "/$dir" ]; then # a system without merged /usr
        mkdir "$root/$dir"
        mount --bind -o ro "/$dir" "$root/$dir"
    fi
done
for dev in null zero random urandom; do
    touch "$root/dev/$dev"
    mount --bind "/dev/$dev" "$root/dev/$dev"
done
# Mounted before the old root goes: the kernel lets a new PID namespace
# mount its /proc only while a full /proc is visible in its mount namespace.
mount -t proc -o nosuid,nodev,noexec sidecar-proc "$root/proc"

install -m 0644 "$conf" "$root/config/nginx.conf"
chmod 1777 "$root/tmp"
chown www-data:www-data "$root/tmp/nginx"
chmod 0700 "$root/tmp/nginx"
mount --bind "$volume" "$root/run/pidone-webapp"

# Into the new root; the old one is detached and gone from this namespace.
cd "$root"
mkdir .old-root
pivot_root . .old-root
cd /
umount --lazy --no-mtab /.old-root
rmdir /.old-root

# nginx as www-data from the start (no root master): with no capability
# left and no_new_privs, nothing in this namespace can become root again.
# The kernel clears the parent-death signal (SIGKILL, from unshare
# --kill-child) when the user changes: --pdeathsig keep sets it again, so
# nginx still goes when run.py does.
exec setpriv --reuid=www-data --regid=www-data --init-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs --pdeathsig=keep \
    /usr/sbin/nginx -c /config/nginx.conf -e stderr
