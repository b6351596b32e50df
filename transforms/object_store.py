"""Object stores under the lake: what ``gs://`` needs when it is an emulator, and ``s3://`` outside a pipeline.

With ``STORAGE_EMULATOR_HOST`` set (gcp-storage-emulator locally, fake GCS in tests), the
Google client talks to the emulator, but Beam first looks for Google credentials and,
finding none, retries for 18–25 s before it connects anonymously. An emulator needs no
credentials, so we tell Beam up front that there are none.

Beam's S3 filesystem refuses to start without pipeline options. A process that runs no
pipeline (the simulator storing photos, the desk reading them) gets Beam's defaults, so
the region, endpoint and credentials come from the usual AWS variables
(``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3``, …); a pipeline's own options win.
"""

from __future__ import annotations

import os

EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"


def prepare_for(path: str) -> None:
    """Call before Beam's FileSystems touches ``path``: cheap, and a no-op off the emulator."""
    if path.startswith("gs://") and os.environ.get(EMULATOR_VARIABLE):
        _anonymous_beam_gcs_credentials()
    elif path.startswith("s3://"):
        _default_beam_options()


def _default_beam_options() -> None:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    if FileSystems._pipeline_options is None:  # what set_options, or a Pipeline, gives
        FileSystems.set_options(PipelineOptions([]))


def _anonymous_beam_gcs_credentials() -> None:
    # Beam caches the credentials it found in _Credentials; caching "none" makes its GCS
    # client anonymous at once (the documented outcome of its own search, minus the wait).
    from apache_beam.internal.gcp import auth

    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = None
        auth._Credentials._credentials_init = True
