"""Object stores under the lake: what ``gs://`` needs when it is an emulator.

With ``STORAGE_EMULATOR_HOST`` set (gcp-storage-emulator locally, fake GCS in tests), the
Google client talks to the emulator, but Beam first looks for Google credentials and,
finding none, retries for 18–25 s before it connects anonymously. An emulator needs no
credentials, so we tell Beam up front that there are none.
"""

from __future__ import annotations

import os

EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"


def prepare_for(path: str) -> None:
    """Call before Beam's FileSystems touches ``path``: cheap, and a no-op off the emulator."""
    if path.startswith("gs://") and os.environ.get(EMULATOR_VARIABLE):
        _anonymous_beam_gcs_credentials()


def _anonymous_beam_gcs_credentials() -> None:
    # Beam caches the credentials it found in _Credentials; caching "none" makes its GCS
    # client anonymous at once (the documented outcome of its own search, minus the wait).
    from apache_beam.internal.gcp import auth

    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = None
        auth._Credentials._credentials_init = True
