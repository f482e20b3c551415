"""The web viewer: a browser page over the native API, served by the collector at ``/ui/``.

``static/`` holds the whole front end as it is served - plain ES modules, one stylesheet, one HTML page,
no build step and nothing fetched from elsewhere at run time. ``serve`` puts those files on the
collector's main listener. The page itself holds no data and needs no key: every data request it makes
carries the read key the user signed in with (kept in ``sessionStorage``, sent as ``Authorization``).
"""
