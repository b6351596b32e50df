"""Flex Template entry point of the batch analysis: ``pipelines.analysis`` on Dataflow."""

import sys

from runners import profiles

sys.exit(profiles.main(["dataflow", "pipelines.analysis", *sys.argv[1:]]))
