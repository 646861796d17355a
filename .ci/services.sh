# shellcheck shell=bash
# Installs the S3- and DynamoDB-compatible servers the tests start by themselves:
#   moto_server (PyPI moto[server]) in a venv, and dynalite (npm),
# both under $HOME/.cache/raincast/servers, and puts their binaries on PATH.
# Also the tools that check the GIS exports (services/api/tests/gis.rs):
#   gdalinfo (Debian's gdal-bin, apt-get when missing) and the IOOS CF
#   checker cchecker.py (PyPI compliance-checker, with netCDF4 and pyproj)
#   in a second venv there.
#
# Source it (`. .ci/services.sh`) so that PATH carries over. Re-running it is
# cheap: an existing install of the pinned version is kept.
# The tests themselves start each server on a free 127.0.0.1 port and stop it
# when they finish (services/testkit); nothing here keeps a server running.

RAINCAST_SERVERS_DIR="${RAINCAST_SERVERS_DIR:-$HOME/.cache/raincast/servers}"
RAINCAST_MOTO_VERSION="${RAINCAST_MOTO_VERSION:-5.2.5}"
RAINCAST_DYNALITE_VERSION="${RAINCAST_DYNALITE_VERSION:-4.0.0}"
RAINCAST_CFCHECK_VERSION="${RAINCAST_CFCHECK_VERSION:-6.1.0}"

raincast_install_servers() {
    local dir="$RAINCAST_SERVERS_DIR"
    local venv="$dir/moto-venv"
    mkdir -p "$dir" || return 1
    if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$RAINCAST_MOTO_VERSION')" 2>/dev/null \
        || [ ! -x "$venv/bin/moto_server" ]; then
        echo "== installing moto[server]==$RAINCAST_MOTO_VERSION into $venv"
        python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "moto[server]==$RAINCAST_MOTO_VERSION" || return 1
    fi
    local dyn="$dir/dynalite"
    if [ ! -x "$dyn/node_modules/.bin/dynalite" ] \
        || ! grep -q "\"version\": \"$RAINCAST_DYNALITE_VERSION\"" "$dyn/node_modules/dynalite/package.json" 2>/dev/null; then
        echo "== installing dynalite@$RAINCAST_DYNALITE_VERSION into $dyn"
        mkdir -p "$dyn" || return 1
        npm install --prefix "$dyn" --no-audit --no-fund --loglevel=error \
            "dynalite@$RAINCAST_DYNALITE_VERSION" || return 1
    fi
    export PATH="$venv/bin:$dyn/node_modules/.bin:$PATH"
    echo "== servers: $(command -v moto_server) $(command -v dynalite)"
}

raincast_install_gis_tools() {
    if ! command -v gdalinfo >/dev/null; then
        echo "== installing gdal-bin (apt-get)"
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq || return 1
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends gdal-bin || return 1
    fi
    local cf="$RAINCAST_SERVERS_DIR/cf-venv"
    if ! "$cf/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('compliance-checker') != '$RAINCAST_CFCHECK_VERSION')" 2>/dev/null \
        || [ ! -x "$cf/bin/cchecker.py" ]; then
        echo "== installing compliance-checker==$RAINCAST_CFCHECK_VERSION into $cf"
        python3 -m venv "$cf" || return 1
        "$cf/bin/pip" install --quiet --disable-pip-version-check \
            "compliance-checker==$RAINCAST_CFCHECK_VERSION" || return 1
    fi
    export PATH="$PATH:$cf/bin"
    echo "== GIS tools: $(command -v gdalinfo) $(command -v cchecker.py)"
}

raincast_install_servers
raincast_install_gis_tools
