"""What the tests and the benchmarks share: fixtures and helpers, and no tests.

A test module imports what it needs from here, never from another test module; a fixture
imported into a test module is a fixture of that module.
"""
