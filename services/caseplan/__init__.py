"""The caseplan service."""
