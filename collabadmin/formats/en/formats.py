"""The one way a time is shown, everywhere (our pages and the Django admin): ISO-like
24-hour date and time in the viewer's time zone, with the zone's abbreviation, e.g.
``2026-12-03 14:05:09 CET`` (``collabadmin/timezones.py`` says where the zone comes from).

Django looks these up for the active language (``FORMAT_MODULE_PATH``); the admin's lists,
read-only fields and history use them, and so does the ``when`` filter of our templates.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i:s"
# What the admin's date and time inputs accept and show (ISO, 24 h), in the viewer's zone.
DATE_INPUT_FORMATS = ["%Y-%m-%d"]
TIME_INPUT_FORMATS = ["%H:%M:%S", "%H:%M"]
DATETIME_INPUT_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
FIRST_DAY_OF_WEEK = 1
