"""An ipywidgets upload-and-predict demo for notebooks: the Streamlit app's twin, in Jupyter.

``PredictDemo()`` predicts in this process (the notebook's own model); ``PredictDemo(url)``
sends the image to a backend through :class:`~yolo_service.client.Client`, exactly as
the UI does. Button callbacks are plain methods, so tests drive them with ``.click()``.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..client import Client
from ..config import get_settings
from ..drawing import draw_detections
from ..errors import YoloServiceError
from ..images import encode_image, load_image
from ..samples import sample_photos
from ..schema import PredictResponse
from ..shapes import sample_scenes

__all__ = ["PredictDemo"]

UPLOAD = "(my upload)"


class PredictDemo(widgets.VBox):
    """Upload an image (or pick a sample), choose a model and a confidence, see the boxes and a table."""

    def __init__(
        self, backend: str | Client | None = None, models: list[str] | None = None, api_key: str | None = None
    ) -> None:
        self.client = Client(backend, api_key=api_key) if isinstance(backend, str) else backend
        if models is None:
            models = self.client.models() if self.client else ["shapes"]
        self._samples = {name: encode_image(image) for name, (image, _) in sample_scenes().items()}
        self._samples |= {name: path.read_bytes() for name, path in sample_photos().items()}
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.sample = widgets.Dropdown(
            options=[UPLOAD, *self._samples], value=next(iter(self._samples)), description="Image"
        )
        self.model = widgets.Dropdown(
            options=models, value="shapes" if "shapes" in models else models[0], description="Model"
        )
        self.confidence = widgets.FloatSlider(
            value=get_settings().confidence, min=0.0, max=1.0, step=0.05, description="Confidence"
        )
        self.button = widgets.Button(description="Predict", button_style="primary", icon="search")
        self.status = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="640px"))
        self.table = widgets.HTML()
        self.result: PredictResponse | None = None
        self.button.on_click(self.predict)
        self.upload.observe(self._select_upload, names="value")
        where = f"backend {self.client.url}" if self.client else "this notebook's process"
        super().__init__(
            [
                widgets.HTML(f"<b>Predict with {html.escape(where)}</b>"),
                widgets.HBox([self.sample, self.upload]),
                widgets.HBox([self.model, self.confidence]),
                self.button,
                self.status,
                self.image,
                self.table,
            ]
        )

    def _select_upload(self, change: dict[str, object]) -> None:
        """An upload selects itself and shows: Predict then runs on it; the previous image's boxes and table go."""
        if change["new"]:
            self.sample.value = UPLOAD
            name = self.upload.value[0]["name"]
            self.result, self.table.value = None, ""
            try:
                self.image.value = encode_image(load_image(bytes(self.upload.value[0]["content"])))
            except YoloServiceError as exc:  # Predict would refuse it too: say so now, show nothing stale
                self.image.value = b""
                self.status.value = f"<span style='color:#b00'>{html.escape(f'{name}: {exc}')}</span>"
                return
            self.status.value = f"{html.escape(name)} uploaded: press Predict."

    def _image_bytes(self) -> bytes | None:
        if self.sample.value != UPLOAD:
            return self._samples[self.sample.value]
        if not self.upload.value:
            return None
        return bytes(self.upload.value[0]["content"])

    def predict(self, _button: widgets.Button | None = None) -> PredictResponse | None:
        """Run the prediction and show it (the Predict button's callback)."""
        data = self._image_bytes()
        if data is None:
            self.status.value = "Upload an image first, or pick a sample."
            return None
        try:
            image = load_image(data)
            if self.client:
                result = self.client.predict(data, self.model.value, confidence=self.confidence.value)
            else:
                from ..models import predict

                result = predict(image, self.model.value, confidence=self.confidence.value)
        except YoloServiceError as exc:
            message = html.escape(f"{type(exc).__name__}: {exc}")
            self.status.value = f"<span style='color:#b00'>{message}</span>"
            return None
        self.result = result
        self.image.value = encode_image(draw_detections(image, result.detections))
        rows = "".join(
            f"<tr><td>{html.escape(d.class_name)}</td><td>{d.confidence:.2f}</td>"
            f"<td>{d.x_min}</td><td>{d.y_min}</td><td>{d.x_max}</td><td>{d.y_max}</td></tr>"
            for d in result.detections
        )
        self.table.value = (
            "<table><tr><th>class_name</th><th>confidence</th><th>x_min</th><th>y_min</th>"
            f"<th>x_max</th><th>y_max</th></tr>{rows}</table>"
        )
        engine = f" on {result.engine}" if result.engine else ""  # last: it says so once the boxes are shown
        self.status.value = html.escape(
            f"{len(result.detections)} detections by {result.model}{engine} in {result.time * 1000:.0f} ms"
        )
        return result
