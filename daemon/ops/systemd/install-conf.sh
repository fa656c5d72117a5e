#!/bin/sh
# meson install script: create CONFDIR/vlmd.conf from the freshly installed vlmd.conf.example
# only when there is none yet, so an operator's edited configuration survives every reinstall.
# $DESTDIR (meson install --destdir) is honoured; --dry-run (MESON_INSTALL_DRY_RUN) writes nothing.
set -eu
dir="${DESTDIR:-}$1"
[ -n "${MESON_INSTALL_DRY_RUN:-}" ] && exit 0
if [ -e "$dir/vlmd.conf" ]; then
	echo "Keeping $dir/vlmd.conf (the new example is $dir/vlmd.conf.example)"
else
	cp "$dir/vlmd.conf.example" "$dir/vlmd.conf"
	chmod 0644 "$dir/vlmd.conf"
	echo "Installing $dir/vlmd.conf (from vlmd.conf.example): set 'model' in it"
fi
