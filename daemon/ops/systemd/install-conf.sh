#!/bin/sh
# meson install script: install-conf.sh CONFDIR NAME... — create CONFDIR/NAME from the freshly
# installed CONFDIR/NAME.example only when there is none yet, so an operator's edited
# configuration survives every reinstall. $DESTDIR (meson install --destdir) is honoured;
# --dry-run (MESON_INSTALL_DRY_RUN) writes nothing.
set -eu
dir="${DESTDIR:-}$1"
shift
[ -n "${MESON_INSTALL_DRY_RUN:-}" ] && exit 0
for name in "$@"; do
	if [ -e "$dir/$name" ]; then
		echo "Keeping $dir/$name (the new example is $dir/$name.example)"
	else
		cp "$dir/$name.example" "$dir/$name"
		chmod 0644 "$dir/$name"
		echo "Installing $dir/$name (from $name.example)"
	fi
done
