"""The image's HEALTHCHECK: exit 0 when the server's /health answers 200.

/health is 503 while the engine loads (and after it failed), 200 when ready.
GENARM_HEALTH_URL overrides the address (default: the image's port 8000).
Standard library only: the image has no curl.
"""

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("GENARM_HEALTH_URL", "http://127.0.0.1:8000/health")


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
