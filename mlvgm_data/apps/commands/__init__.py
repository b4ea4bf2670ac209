"""Subcommands of the ``mlvgm-data`` CLI (see ``mlvgm_data.apps.cli``)."""
