#!/usr/bin/python3
"""Opens a confirmation link in headless Chromium, presses its button like a
person would, and prints the page text before and after. Drives Chromium over
the DevTools protocol (python3-websocket), so no browser download is needed.

usage: browser_confirm.py URL
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

TIMEOUT = 20


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})

    def wait_for(self, event):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("method") == event:
                return message
        raise RuntimeError("no %s within %ss" % (event, TIMEOUT))

    def text(self):
        result = self.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
        return result["result"]["value"]


def main():
    url = sys.argv[1]
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-allow-origins=*", "--remote-debugging-port=0", "--user-data-dir=" + profile, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + TIMEOUT
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%s/json" % port, timeout=TIMEOUT))
        target = next(t for t in targets if t["type"] == "page")
        page = Page(websocket.create_connection(target["webSocketDebuggerUrl"], timeout=TIMEOUT))
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        page.wait_for("Page.loadEventFired")
        print("BEFORE: " + " ".join(page.text().split()))
        page.call("Runtime.evaluate", expression="document.querySelector('button').click()")
        page.wait_for("Page.loadEventFired")
        print("AFTER: " + " ".join(page.text().split()))
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
