"""Handlers for the integration tests, importable by their dotted paths
("tools.atp_demo.handler") with integration/ on sys.path, as EOxServer's
own tools/ directory was."""
