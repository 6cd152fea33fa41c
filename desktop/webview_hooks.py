"""The camera/microphone rule of desktop/window.py wired into each of pywebview 6.2.1's web views.

pywebview answers media permission requests badly or not at all, differently per backend:
- GTK (WebKitGTK): it turns media streams on but never answers WebKit's `permission-request` signal, so every
  getUserMedia fails with NotAllowedError. We connect a handler before the window shows.
- Qt (WebEngine): it appends `--use-fake-ui-for-media-stream` to QTWEBENGINE_CHROMIUM_FLAGS, which grants every
  origin without asking, and its own handler passes a plain int where PySide6 6.12 wants a `PermissionPolicy`
  (TypeError: getUserMedia never resolves). We drop the flag and replace the handler.
- WebView2 (Windows) and WKWebView (macOS): no handler, so the system's own prompt (or its default) decides for
  any origin. We answer WebView2's PermissionRequested and WKUIDelegate's requestMediaCapturePermissionForOrigin.
  These two are written to pywebview's and the platforms' documented APIs but cannot run on this Linux build
  machine: the origin rule they call is unit-tested here, the hooks themselves only on those systems.

Every hook reaches into pywebview 6.2.1's backend modules (class and attribute names below): pyproject.toml pins
pywebview to that version, and a new version must be checked against these names before the pin moves.
"""

from __future__ import annotations

import importlib
import logging
import os

from desktop.window import MEDIA_FEATURES, media_allowed, webkitgtk_allows, webview2_allows, wkwebview_allows

log = logging.getLogger("fusiondesk.window")

FAKE_UI_FLAG = "--use-fake-ui-for-media-stream"


def prepare(backend: str, app_url: str, mock_capture: bool = False) -> str | None:
    """Load the backend (raising if it cannot: the caller falls back to the browser) and patch what has to be patched
    before any window exists. Returns the `gui` name for webview.start."""
    if backend == "gtk":
        # Imported here, not by webview.start: pywebview would log a traceback and then try Qt on its own.
        importlib.import_module("webview.platforms.gtk")  # ValueError "Namespace WebKit2 not available" if missing

        _state["mock_capture"] = mock_capture
        return "gtk"
    if backend == "qt":
        os.environ.setdefault("QT_API", "pyside6")
        _prepare_qt(app_url)
        return "qt"
    return None  # pywebview's default: edgechromium on Windows, cocoa on macOS


def attach(backend: str, window, app_url: str) -> None:
    """Per-window hooks, run by pywebview's `before_show` event: on the GUI thread, after the web view is made and
    before the page loads or the window shows."""
    hooks = {"gtk": _attach_gtk, "native": _attach_native}
    if backend in hooks:
        window.events.before_show += lambda window: hooks[backend](window, app_url)


_state = {"mock_capture": False}


def _log_decision(allowed: bool, what: str, where: str) -> None:
    log.info("%s %s for %s", "granted" if allowed else "denied", what, where)


# -- GTK / WebKitGTK -----------------------------------------------------------------------------------------------


def _attach_gtk(window, app_url: str) -> None:
    from webview.platforms import gtk

    webview = gtk.BrowserView.instances[window.uid].webview  # pywebview 6.2.1: the WebKit2.WebView of that window
    if _state["mock_capture"]:
        webview.get_settings().props.enable_mock_capture_devices = True

    # A function, not a property, in WebKitGTK's API (2.34+): a getDisplayMedia request is a UserMedia one too.
    for_display = getattr(gtk.webkit, "user_media_permission_is_for_display_device", None)

    def on_permission_request(view, request) -> bool:
        kind = type(request).__name__
        display = kind == "UserMediaPermissionRequest" and for_display is not None and bool(for_display(request))
        allowed = webkitgtk_allows(kind, view.get_uri(), app_url, display=display)
        if allowed:
            request.allow()
        else:
            request.deny()
        _log_decision(allowed, kind, view.get_uri())
        return True  # answered: WebKit's default (deny, or a prompt in some versions) must not run

    webview.connect("permission-request", on_permission_request)


# -- Qt WebEngine (the opt-in `qt` extra) -------------------------------------------------------------------------


def _prepare_qt(app_url: str) -> None:
    from qtpy.QtWebEngineCore import QWebEnginePage
    from webview.platforms import qt as webview_qt

    appended = getattr(webview_qt.environ_append, "fusiondesk_original", webview_qt.environ_append)

    def environ_append_without_fake_ui(key: str, *values: str, sep: str = " ") -> None:
        kept = [v for v in values if v != FAKE_UI_FLAG]
        if kept:
            appended(key, *kept, sep=sep)

    environ_append_without_fake_ui.fusiondesk_original = appended

    def on_feature_permission_requested(page, url, feature) -> None:
        name = getattr(feature, "name", str(feature)).split(".")[-1]
        allowed = media_allowed(url.toString(), app_url, name)
        policy = QWebEnginePage.PermissionPolicy
        page.setFeaturePermission(url, feature, policy.PermissionGrantedByUser if allowed else policy.PermissionDeniedByUser)
        _log_decision(allowed, name, url.toString())

    webview_qt.environ_append = environ_append_without_fake_ui
    webview_qt.BrowserView.WebPage.onFeaturePermissionRequested = on_feature_permission_requested
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "").split()
    os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = " ".join(f for f in flags if f != FAKE_UI_FLAG)


# -- WebView2 (Windows) and WKWebView (macOS): not runnable on the Linux build machine ---------------------------


def _attach_native(window, app_url: str) -> None:
    import sys

    if sys.platform == "win32":
        _attach_webview2(window, app_url)
    elif sys.platform == "darwin":
        _attach_wkwebview(window, app_url)


def _attach_webview2(window, app_url: str) -> None:
    # pywebview 6.2.1 winforms: window.native is the BrowserForm, .browser its EdgeChrome, .webview the WinForms
    # WebView2 control, whose CoreWebView2 exists once initialization completes (after this event).
    browser = getattr(window.native, "browser", None)
    control = getattr(browser, "webview", None)
    if control is None:  # the old MSHTML renderer: no camera or microphone at all
        log.warning("no WebView2 in this window: camera and microphone are unavailable")
        return
    from Microsoft.Web.WebView2.Core import CoreWebView2PermissionState

    def on_permission_requested(sender, args) -> None:
        allowed = webview2_allows(str(args.Uri), str(args.PermissionKind), app_url)
        args.State = CoreWebView2PermissionState.Allow if allowed else CoreWebView2PermissionState.Deny
        _log_decision(allowed, str(args.PermissionKind), str(args.Uri))

    def on_ready(sender, args) -> None:
        if args.IsSuccess:
            sender.CoreWebView2.PermissionRequested += on_permission_requested

    control.CoreWebView2InitializationCompleted += on_ready


_media_delegate_class = None


def _attach_wkwebview(window, app_url: str) -> None:
    # pywebview 6.2.1 cocoa: BrowserView.instances[uid] holds .webview (WKWebView) and ._browserDelegate, its UI and
    # navigation delegate and the JS bridge's message handler. A subclass that also answers media capture requests
    # (macOS 12+) becomes the UI and navigation delegate; the original stays the bridge's handler (pywebview finds
    # the window from it). The app's Info.plist carries NSCameraUsageDescription / NSMicrophoneUsageDescription
    # (build/freeze.spec): without them macOS ends the app at the first request.
    global _media_delegate_class
    import objc
    from webview.platforms import cocoa

    if _media_delegate_class is None:
        class FusionDeskBrowserDelegate(cocoa.BrowserView.BrowserDelegate,
                                        protocols=[objc.protocolNamed("WKUIDelegate")]):
            def webView_requestMediaCapturePermissionForOrigin_initiatedByFrame_type_decisionHandler_(
                    self, webview, origin, frame, capture_type, handler):
                allowed = wkwebview_allows(str(origin.protocol()), str(origin.host()), int(origin.port()),
                                           int(capture_type), self.fusiondesk_app_url)
                handler(1 if allowed else 2)  # WKPermissionDecisionGrant / WKPermissionDecisionDeny
                _log_decision(allowed, f"media capture type {int(capture_type)}", str(origin.host()))

        _media_delegate_class = FusionDeskBrowserDelegate
    view = cocoa.BrowserView.instances[window.uid]
    delegate = _media_delegate_class.alloc().init()
    delegate.fusiondesk_app_url = app_url
    view.fusiondesk_media_delegate = delegate  # WKWebView holds its delegates weakly
    view.webview.setUIDelegate_(delegate)
    view.webview.setNavigationDelegate_(delegate)


__all__ = ["MEDIA_FEATURES", "attach", "prepare"]
