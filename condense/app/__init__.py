"""``condense app``: a static site that scores patient files in the browser with a model's step file.

* :mod:`condense.app.site`: :func:`build_site` writes the site (the page, our JavaScript, LiteRT.js,
  the model file and its metadata) from a model directory.
* :mod:`condense.app.serve`: :func:`make_server` serves a site on 127.0.0.1 with the headers the
  runtime wants.
* ``static/``: the page (``index.html``, ``app.js``), the preprocessing that reads every rule from
  the model's metadata (``preprocess.js``) and the LiteRT.js runner (``runtime.js``).

Design notes and the contract a native app follows: ``docs/app.md``.
"""
