"""Object stores under the lake: what ``gs://`` needs when it is an emulator, and what a process without a pipeline needs.

With ``STORAGE_EMULATOR_HOST`` set (gcp-storage-emulator locally, fake GCS in tests), the
Google client talks to the emulator, but Beam first asks Google's auth library for
credentials and, finding none, retries for 18–25 s before it connects anonymously. An
emulator checks no credentials, so where none are configured we point
``GOOGLE_APPLICATION_CREDENTIALS`` (the auth library's own variable) at a file holding a
token that never expires: the search succeeds at once, in this process and in every
worker it starts, and the emulator ignores the token.

Beam's filesystems take their options from the pipeline that runs in the process, once it
is built. A pipeline's command line gives its options to them as soon as it has parsed
them (:func:`use_options`), so what it reads before its pipeline exists (a drain's state,
compaction's plan) sees the same S3 endpoint and region as its pipeline. A process that
runs no pipeline (the simulator storing photos, the desk reading them) calls
:func:`use_beam_defaults`: Beam's S3 filesystem starts with its defaults and the region,
endpoint and credentials come from the usual AWS variables (``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL_S3``, …).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"
CREDENTIALS_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
# An OAuth user's credentials with a token already in hand and no expiry: valid without a refresh.
EMULATOR_CREDENTIALS = {
    "type": "authorized_user",
    "client_id": "dronecop-storage-emulator",
    "client_secret": "unused",
    "refresh_token": "unused",
    "token": "storage-emulator",
    "expiry": "9999-12-31T00:00:00Z",
}


def prepare_for(path: str) -> None:
    """Call before Beam's FileSystems touches ``path``: cheap, and a no-op off the emulator."""
    if path.startswith("gs://") and os.environ.get(EMULATOR_VARIABLE) and not os.environ.get(CREDENTIALS_VARIABLE):
        os.environ[CREDENTIALS_VARIABLE] = str(emulator_credentials_file())


def emulator_credentials_file() -> Path:
    """The credentials file for an emulator, written once per machine (it holds nothing secret)."""
    path = Path(tempfile.gettempdir()) / "dronecop-storage-emulator-credentials.json"
    content = orjson.dumps(EMULATOR_CREDENTIALS)
    if not path.is_file() or path.read_bytes() != content:
        staged = path.with_name(f"{path.name}.{os.getpid()}")
        staged.write_bytes(content)
        staged.replace(path)
    return path


def use_options(options: PipelineOptions) -> None:
    """Beam's filesystems in this process use ``options`` (a pipeline built later sets them again, the same)."""
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(options)


def use_beam_defaults() -> None:
    """Beam's filesystems with Beam's default options: for a process that runs no pipeline."""
    from apache_beam.options.pipeline_options import PipelineOptions

    use_options(PipelineOptions([]))
