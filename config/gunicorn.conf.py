"""gunicorn's settings for both of Vitrine's pools (README, Production: ``gunicorn -c
config/gunicorn.conf.py ...``): gunicorn's own lines in the app's log format, so a pool
writes only JSON lines in production (``LOG_FORMAT``, ``LOG_LEVEL``; readable lines with
``DEBUG`` on), a worker's boot failure one line with its traceback as a field.

The format is the settings' own. Where the settings cannot load (a required setting
missing), gunicorn's lines stay JSON (``LOG_FORMAT`` aside) and each worker fails to boot
on the settings' error, logged as one line with its traceback."""

import importlib.util
import os
from pathlib import Path


def _logs():
    """``config/settings/logs.py`` loaded by its path: it needs only structlog, where an
    import of ``config.settings.logs`` would run the settings first."""
    spec = importlib.util.spec_from_file_location(
        "vitrine_server_logs", Path(__file__).with_name("settings") / "logs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:
    from config import settings
except Exception:  # the workers report it, each as it fails to boot
    fmt, level = (os.environ.get("LOG_FORMAT") or "json").lower(), "INFO"
else:
    fmt, level = settings.LOG_FORMAT, settings.LOG_LEVEL

logconfig_dict = _logs().server_logging_config(fmt=fmt, level=level)
