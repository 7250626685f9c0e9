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
