"""The production Argon2id cost: the suite hashes at a minimal cost, this file at the real one."""

from __future__ import annotations

import json
import subprocess
import sys

from backend.accounts import passwords
from tests.conftest import TEST_PASSWORD_COST

# A fresh process, where nothing has called `use_cost`: what a gateway process hashes with.
# `weaker` is set before it: a hash made at the suite's cost.
PRODUCTION_PROCESS = """
import json
from backend.accounts import passwords
stored = passwords.hash_password("correct horse")
print(json.dumps({
    "stored": stored,
    "verifies": passwords.verify_password(stored, "correct horse"),
    "unknown_user_refused": not passwords.verify_password(None, "correct horse"),
    "current": not passwords.needs_rehash(stored),
    "upgrades_weaker": passwords.needs_rehash(weaker),
}))
"""


def test_a_gateway_process_hashes_with_argon2id_32_mib_and_three_passes() -> None:
    weaker = passwords._hasher_for(TEST_PASSWORD_COST).hash("correct horse")
    script = f"weaker = {weaker!r}\n{PRODUCTION_PROCESS}"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    outcome = json.loads(result.stdout)
    assert outcome["stored"].startswith("$argon2id$v=19$m=32768,t=3,p=1$")
    assert outcome["verifies"] and outcome["unknown_user_refused"] and outcome["current"]
    assert outcome["upgrades_weaker"]  # a hash weaker than production is redone at login
