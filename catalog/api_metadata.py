"""What an OPTIONS request to the API gets (``REST_FRAMEWORK["DEFAULT_METADATA_CLASS"]``).

Its own module: DRF imports it while ``rest_framework.views`` is still loading, so it may
not import the views (``catalog.api`` does).
"""

from __future__ import annotations

from rest_framework.metadata import BaseMetadata


class NoMetadata(BaseMetadata):
    """The Allow header (APIView sets it on every answer) and an empty body: DRF's default
    described the view with its class name and docstring. The API's description is
    /v1/openapi.json."""

    def determine_metadata(self, request, view):
        return None
