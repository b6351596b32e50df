"""The operators' alert desk: code-100 alerts in, human classifications out as corrected messages.

``python -m alert_desk`` serves the page and the JSON API; see :mod:`alert_desk.app`.
"""
