"""The dashboard: the web pages and their static assets (``static/``: one HTML shell, plain
JavaScript modules and CSS; no build step, no Node.js where insitu is installed).

What it owns: the page URLs (each page has its own, so it can be shared), the files under
``static/``, the vendored JavaScript libraries (``static/vendor``, pinned in
``package-lock.json`` beside this file, refreshed by ``scripts/ui-vendor``) and the
security headers the pages are served with. The pages hold no data: every number they show
comes from the API (``/api/v1``) in the browser, with the caller's own session or token, so
who may see what is decided by the API's access rules alone.

It may import only what the server may (``insitu.errors``, ``insitu._config``,
``insitu.store``) and in fact imports nothing of insitu; the server mounts it
(:func:`mount`).
"""

from insitu.ui._pages import PAGES, mount

__all__ = ["PAGES", "mount"]
