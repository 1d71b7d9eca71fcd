"""The cbzoho sandbox: one local server that speaks the Chargebee API v2 and the Zoho CRM API v8 over real HTTP.

Why it is its own package: it exists for the demo, the tests and the benchmarks, not for a sync. It is
installed by the `sandbox` extra (`pip install 'cbzoho[sandbox]'`; the `dev` extra includes it) and only
`cbzoho sandbox`, `cbzoho sandbox-token`, `cbzoho demo`, the tests and the benchmarks import it. Product
code (`cbzoho_pipeline`) never does; a test holds that line.

Start it with `cbzoho sandbox` (see `server.serve`); drive it through the control surface under `/_sandbox`
(`app.py`); `chargebee_writer.ChargebeeWriter` writes test data through the product's Chargebee client.
"""
