"""Flex Template entry point of the drone stream: ``pipelines.stream --streaming`` on Dataflow."""

import sys

from runners import profiles

sys.exit(profiles.main(["dataflow", "pipelines.stream", "--streaming", *sys.argv[1:]]))
