"""DroneCop csv_ingest: the NYPD "Parking Violations Issued" history from CSV to Kafka.

``python -m csv_ingest FILE`` streams a city export into the ``nypd-history`` topic in
batches of typed records, resumably: :mod:`csv_ingest.records` owns the record rules,
:mod:`csv_ingest.source` the byte-position-aware reading, :mod:`csv_ingest.batches` the
batches and the regions they never cross, :mod:`csv_ingest.workers` the processes that
read regions in parallel, :mod:`csv_ingest.checkpoint` the on-disk progress and
:mod:`csv_ingest.loader` the Kafka side.
"""
