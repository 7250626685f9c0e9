# Shared by scripts/demo and scripts/test: install what a fresh Debian/Ubuntu machine lacks.
# shellcheck shell=bash

# Debian packages the build and the tests need:
#   libclang-dev   bindgen for the bundled RocksDB (librocksdb-sys)
#   bubblewrap     the embedded process sandbox runtime
#   busybox-static the minimal root filesystem for sandboxes and Docker test images
#   iproute2, iptables  sandbox networking and the workload network policy
#   fonts-dejavu-core   text in agora-sim plots
AGORA_APT_PACKAGES=(libclang-dev bubblewrap busybox-static build-essential pkg-config iproute2 iptables fonts-dejavu-core)

agora_sudo() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2
        return 1
    fi
}

agora_ensure_deps() {
    local missing=()
    for pkg in "${AGORA_APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if ! command -v apt-get >/dev/null; then
            echo "missing packages (${missing[*]}) and no apt-get; install them by hand" >&2
            return 1
        fi
        echo "==> installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        agora_sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
            { agora_sudo apt-get update -q >/dev/null && agora_sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
    fi
    if ! command -v cargo >/dev/null; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "==> installing the Rust toolchain (rustup)"
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
}

# Python tools the surface tests drive (tests/python/requirements.txt: the official MCP SDK,
# openapi-spec-validator, schemathesis), in a venv under the cargo target dir. Exports
# AGORA_PYTHON_VENV for the tests (tests/src/python.rs finds the same venv without it).
agora_ensure_python_deps() {
    local req=tests/python/requirements.txt
    local target="${CARGO_TARGET_DIR:-target}"
    mkdir -p "$target"
    local venv
    venv="$(cd "$target" && pwd)/python-venv"
    if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/.agora-requirements"; then
        export AGORA_PYTHON_VENV="$venv"
        return 0
    fi
    if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "==> installing python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        agora_sudo apt-get install -y -q python3 python3-venv >/dev/null 2>&1 ||
            { agora_sudo apt-get update -q >/dev/null && agora_sudo apt-get install -y -q python3 python3-venv >/dev/null; } ||
            return 1
    fi
    echo "==> installing the Python test tools into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" &&
        cp "$req" "$venv/.agora-requirements" || return 1
    export AGORA_PYTHON_VENV="$venv"
}
