"""Print the demo user's current TOTP code (demo mode only; reads var/demo-credentials.json)."""

import json
import sys

import pyotp

from backend.config import load_settings


def main() -> int:
    # Only var_dir is needed: the demo names no CA bundle of its own.
    path = load_settings({"ESTAFETTE_CA_BUNDLE": "system"}).var_dir / "demo-credentials.json"
    if not path.is_file():
        print("no demo credentials yet: run `make run` first", file=sys.stderr)
        return 1
    print(pyotp.TOTP(json.loads(path.read_text())["totp_secret"]).now())
    return 0


if __name__ == "__main__":
    sys.exit(main())
