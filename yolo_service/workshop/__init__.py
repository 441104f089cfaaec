"""The workshop's helpers: what the notebooks, the CLI's workshop commands and the tests use around the kit.

- :mod:`.teaching`: the real code on screen, checkpoints, the learners' copies of the notebooks;
- :mod:`.checks`: checkpoints whose code would show the answer, called from the notebooks by name;
- :mod:`.widgets`: an ipywidgets upload-and-predict demo (the Streamlit app's twin in Jupyter);
- :mod:`.processes`: run the API or the UI as a background process on a free loopback port;
- :mod:`.deploy`: every docker, compose and gcloud command of the deployment steps;
- :mod:`.training`: regenerate the shapes data and retrain the bundled model;
- :mod:`.bench`: speed and memory figures of the engines and the server (``yolo-service bench``);
- :mod:`.costs`: what the class costs on Google Cloud, from a measured CPU time and the published prices.

They sit on top of the library: they import the core, the catalog and the engines, and the core
(settings, schema, images, client …), the engines and the API never import them, so nothing
here is loaded by a server or shipped into its hot path (tests/unit/test_layers.py holds that).
"""
