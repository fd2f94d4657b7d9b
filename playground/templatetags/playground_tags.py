from __future__ import annotations

from django import template
from django.utils.html import json_script

from playground.palette import PALETTE

register = template.Library()


@register.simple_tag
def box_palette() -> str:
    """``<script id="box-palette">``: the box colours for static/playground/playground.js."""
    return json_script(list(PALETTE), "box-palette")
