"""The HTTP surface: WHMCS, admin and client APIs, dashboards. Writes only by recording commands."""
