"""The read-only status page: what is served where, when it renews, what is wrong.

- :mod:`.render`: report data -> HTML (pure; Jinja2 with autoescaping);
- :mod:`.timeline`: the expiry and renewal chart as SVG (pure);
- :mod:`.access`: who may read it (loopback, a bearer token, a session cookie; pure);
- :mod:`.server`: routes and headers for the daemon's HTTP server (:func:`certkeeper.metrics.serve`).

``certkeeper status --html FILE`` writes the same page as one self-contained file.
"""
