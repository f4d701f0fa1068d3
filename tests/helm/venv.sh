# Sourced by scripts/test-helm and scripts/render-manifests: makes the Python
# virtualenv for the Helm chart tools ($HELM_VENV, default .venv-helm) and
# keeps it in step with tests/helm/requirements.txt.
# Expects to run from the repository root.

HELM_VENV="${HELM_VENV:-$PWD/.venv-helm}"

ensure_helm_venv() {
    local req=tests/helm/requirements.txt stamp want
    stamp="$HELM_VENV/.requirements.sha256"
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ -x "$HELM_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    local python=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "python3.11 or python3 is needed for the Helm chart tests" >&2
        return 1
    fi
    echo "setting up $HELM_VENV from $req" >&2
    [ -x "$HELM_VENV/bin/python" ] || "$python" -m venv "$HELM_VENV" || return 1
    "$HELM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || return 1
    echo "$want" >"$stamp"
}
