"""The HTTP surface: WHMCS API, admin and client APIs, dashboards. Writes only by recording commands."""
