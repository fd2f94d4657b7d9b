"""English date and time formats, the site's own (its templates write ``j M Y`` and
``j M Y H:i`` explicitly): used where Django formats a date itself, the admin's change lists
and forms above all. Numbers and the input formats are Django's English ones (anything not
named here falls through to ``django.conf.locale.en.formats``)."""

DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "j M Y H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "j F"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y H:i"
