"""The one place assignments are registered: release name -> module of check functions."""

ASSIGNMENTS: dict[str, str] = {
    "01-data": "autograder.a01_data",
    "02-ssl": "autograder.a02_ssl",
}
