#!/usr/bin/env python3
"""The clinician's journey through `thecal serve --sim`, in headless Chromium.

Debian's chromium and chromedriver, driven by Selenium (WebDriver). Starts the real
`thecal` binary with a simulated pump whose memory is kept in a state file, then:
interrogate; edit a weekly schedule with one invalid step (the located error appears as
it is typed), fix it, review side by side, write; refill with a drug change and a
discrepancy between the aspirated and the expected volume (flagged, assessed) and a
bridge bolus; the session report (HTML, JSON, printed to PDF); end the session; read
the prescription back with the CLI. Also: requests without the token, with a bad Host or
a foreign Origin are refused. Screenshots of every screen go to $THECAL_SCREENSHOTS.

Usage: journey.py PATH/TO/thecal
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

THECAL = os.path.abspath(sys.argv[1])
SHOTS = os.environ.get("THECAL_SCREENSHOTS", "target/browser-screenshots")
os.makedirs(SHOTS, exist_ok=True)
WORK = tempfile.mkdtemp(prefix="thecal-browser-")
STATE = os.path.join(WORK, "pump.state")
RECORDS = os.path.join(WORK, "records.sqlite")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def start_server():
    p = subprocess.Popen(
        [THECAL, "--sim", "--sim-state", STATE, "--records", RECORDS, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    for line in p.stdout:
        print("serve: " + line.rstrip(), flush=True)
        m = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=([0-9a-f]{32})", line)
        if m:
            return p, m.group(1), m.group(3)
        if time.time() > deadline:
            break
    raise SystemExit("thecal serve printed no address")


def raw(url, method="GET", headers=None, body=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def door_checks(base, token):
    status, _ = raw(base + "/")
    check(status == 403, f"no token: refused ({status})")
    status, _ = raw(base + "/?token=" + "0" * 32)
    check(status == 403, f"wrong token: refused ({status})")
    status, _ = raw(base + "/?token=" + token, headers={"Host": "rebound.example:80"})
    check(status == 421, f"foreign Host (DNS rebinding): refused ({status})")
    cookie = {"Cookie": "thecal_token=" + token}
    status, _ = raw(base + "/therapy/review", "POST",
                    {**cookie, "Origin": "http://evil.example",
                     "Content-Type": "application/x-www-form-urlencoded"}, b"what=stop")
    check(status == 403, f"POST from a foreign Origin: refused ({status})")
    status, _ = raw(base + "/confirm", "POST",
                    {**cookie, "Content-Type": "application/x-www-form-urlencoded"}, b"nonce=x")
    check(status == 403, f"POST without an Origin: refused ({status})")


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("THECAL_CHROMIUM", "/usr/bin/chromium")
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,1000",
              "--user-data-dir=" + os.path.join(WORK, "profile")]:
        o.add_argument(a)
    service = Service(executable_path=os.environ.get("THECAL_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=o)


def shot(d, name):
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
    path = os.path.join(SHOTS, name + ".png")
    d.save_screenshot(path)
    d.set_window_size(1280, 1000)
    print("     screenshot " + path, flush=True)


def field(d, name):
    return d.find_element(By.NAME, name)


def set_text(d, name, value):
    e = field(d, name)
    e.clear()
    e.send_keys(value)


def tick(d, name, value, on):
    box = d.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]')
    if box.is_selected() != on:
        box.click()


def main():
    server, base, token = start_server()
    door_checks(base, token)
    d = browser()
    wait = WebDriverWait(d, 20)
    try:
        # Interrogation.
        d.get(base + "/?token=" + token)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="status"]')))
        page = d.find_element(By.TAG_NAME, "main").text
        check("SIM000001" in d.find_element(By.CSS_SELECTOR, '[data-testid="pump"]').text, "the pump's serial in the banner")
        check("token=" not in d.current_url, "the token left the address bar")
        check("Alarm date" in page and "End of service (EOS)" in page, "interrogation: alarm date, battery with ERI/EOS")
        shot(d, "01-interrogation")

        d.get(base + "/prescription")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="steps"]')))
        check("baclofen" in d.find_element(By.TAG_NAME, "main").text, "prescription: the drug")
        loaded = d.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        check(loaded, "prescription: both plots drawn")
        shot(d, "02-prescription")

        # Schedule: weekdays and weekend apart, one step without its unit.
        d.get(base + "/schedule")
        wait.until(EC.presence_of_element_located((By.ID, "schedule")))
        for day in ["sat", "sun"]:
            tick(d, "profile[1].days", day, False)
            tick(d, "profile[2].days", day, True)
        set_text(d, "profile[2].steps[1].from", "00:00")
        set_text(d, "profile[2].steps[1].dose", "200 µg/day")
        set_text(d, "profile[1].steps[2].dose", "170")
        bad = 'input.bad[name="profile[1].steps[2].dose"]'
        where = '.fieldmsg[data-for="profile[1].steps[2].dose"]'
        wait.until(lambda d: "missing unit" in d.find_element(By.CSS_SELECTOR, where).text)
        msg = d.find_element(By.CSS_SELECTOR, where).text
        check(bool(d.find_elements(By.CSS_SELECTOR, bad)) and '"170 µg/day"' in msg,
              f"schedule: the invalid step is located as it is typed ({msg!r})")
        shot(d, "03-schedule-invalid-step")
        set_text(d, "profile[1].steps[2].dose", "170 µg/day")
        wait.until(lambda d: d.find_element(By.ID, "check").get_attribute("class") == "done")
        check(not d.find_elements(By.CSS_SELECTOR, bad), "schedule: fixed, the error is gone")
        d.find_element(By.CSS_SELECTOR, '[data-testid="to-review"]').click()
        review = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="review"]')))
        changed = review.find_elements(By.CSS_SELECTOR, "tr.changed")
        check(len(changed) >= 1 and "170 µg/day" in review.text, "review: side by side, the change marked")
        check("Low-reservoir alarm" in review.text, "review: both alarm dates")
        shot(d, "04-schedule-review")
        nonce = d.find_element(By.NAME, "nonce").get_attribute("value")
        d.find_element(By.CSS_SELECTOR, '[data-testid="confirm"]').click()
        done = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="done"]')))
        check("revision 2" in done.text and "verified" in done.text, f"schedule written and verified ({done.text!r})")
        shot(d, "05-schedule-written")
        # The same confirmation posted again does nothing.
        again = d.execute_script(
            "return fetch('/confirm', {method: 'POST', body: new URLSearchParams({nonce: arguments[0]})})"
            ".then(r => r.text())", nonce)
        check("nothing is waiting" in again, "a confirmation is carried out once only")

        # Refill with a drug change (1000 µg/mL), a discrepancy, and a bridge bolus.
        d.get(base + "/refill")
        wait.until(EC.presence_of_element_located((By.ID, "refill")))
        set_text(d, "aspirated", "15 mL")
        set_text(d, "label_drug", "baclofen")
        set_text(d, "label_concentration", "500 µg/mL")
        tick(d, "needle", "yes", True)
        set_text(d, "volume", "20 mL")
        tick(d, "change", "new", True)
        set_text(d, "concentration", "1000 µg/mL")
        set_text(d, "bridge_volume", "0.25 mL")
        d.find_element(By.CSS_SELECTOR, '[data-testid="refill-review"]').click()
        problem = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="problem"]')))
        check("label_concentration" in problem.text and "do not fill" in problem.text,
              "refill: a label that does not match the new prescription is refused")
        check(d.find_elements(By.CSS_SELECTOR, 'input.bad[name="label_concentration"]') != [], "refill: located on the label field")
        set_text(d, "label_concentration", "1000 µg/mL")
        d.find_element(By.CSS_SELECTOR, '[data-testid="refill-review"]').click()
        asp = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="aspiration"]')))
        check("DISCREPANCY" in asp.text and "15 mL" in asp.text, f"refill: the discrepancy is flagged ({asp.text!r})")
        checklist = d.find_element(By.CSS_SELECTOR, '[data-testid="checklist"]').text
        check("Needle in the reservoir" in checklist and "0.25 mL" in checklist, "refill: the checklist and the bridge bolus")
        shot(d, "06-refill-review")
        d.find_element(By.CSS_SELECTOR, '[data-testid="confirm"]').click()
        check(bool(d.find_elements(By.CSS_SELECTOR, '[data-testid="aspiration"]')),
              "refill: not recorded until the discrepancy is assessed (the browser holds the form)")
        d.find_element(By.CSS_SELECTOR, 'input[name="assessed"]').click()
        d.find_element(By.CSS_SELECTOR, '[data-testid="confirm"]').click()
        done = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="done"]')))
        check("Refill recorded" in done.text and "Bridge bolus started" in done.text, f"refill recorded, bridge bolus started ({done.text!r})")
        shot(d, "07-refill-recorded")

        d.get(base + "/bolus")
        shot(d, "08-bolus")
        d.get(base + "/log")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="log"]')))
        check("refill" in d.find_element(By.CSS_SELECTOR, '[data-testid="log"]').text.lower(), "event log: the refill")
        shot(d, "09-event-log")

        # Session report.
        d.get(base + "/report")
        rep = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="report"]')))
        t = rep.text
        check("revision 1 → 2" in t and "Refill recorded" in t and "YES: less than expected" in t
              and "Aspirated" in t and "SIM000001" in t, "report: identity, the change side by side, the refill with expected vs aspirated")
        shot(d, "10-session-report")
        pdf = base64.b64decode(d.print_page())
        with open(os.path.join(SHOTS, "session-report.pdf"), "wb") as f:
            f.write(pdf)
        check(pdf.startswith(b"%PDF") and len(pdf) > 10_000, f"report printed to PDF ({len(pdf)} bytes)")
        body = d.execute_script(
            "return fetch('/report.json', {credentials: 'same-origin'}).then(r => r.text())")
        doc = json.loads(body)
        kinds = [c["kind"] for c in doc["changes"]]
        refill = next(c for c in doc["changes"] if c["kind"] == "refill")
        check(doc["schema"] == 1 and kinds[:2] == ["prescription", "refill"], f"report JSON: the changes ({kinds})")
        check(refill["aspirated_nl"] == 15_000_000 and refill["discrepancy"] == "less"
              and refill["bridge_bolus_nl"] == 250_000, "report JSON: the refill's field record")
        with open(os.path.join(SHOTS, "session-report.json"), "w") as f:
            f.write(body)

        # End the session: the final report, the server stops.
        d.find_element(By.CSS_SELECTOR, "form.end button").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="report"]')))
        check("Session ended" in d.find_element(By.TAG_NAME, "h1").text, "end: the final report")
    except Exception:
        shot(d, "failure")
        print("page at failure:\n" + d.find_element(By.TAG_NAME, "body").text[:3000], flush=True)
        raise
    finally:
        d.quit()
    try:
        code = server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        code = None
    check(code == 0, f"the server stopped when the session ended (exit {code})")

    # The pump's memory read with the CLI.
    out = subprocess.run([THECAL, "--sim", "--sim-state", STATE, "--json", "prescription"],
                         capture_output=True, text=True)
    check(out.returncode == 0, "the CLI reads the pump after the session: " + out.stderr.strip())
    if out.returncode == 0:
        p = json.loads(out.stdout)
        check(p["revision"] == 3 and p["concentration_ng_per_ml"] == 1_000_000 and p["weekly"],
              f"the pump holds the new weekly prescription at 1000 µg/mL (revision {p['revision']})")
    # The session kept in the records, and its FHIR export.
    out = subprocess.run([THECAL, "--records", RECORDS, "--json", "records", "show", "--last"],
                         capture_output=True, text=True)
    check(out.returncode == 0, "the session is in the records: " + out.stderr.strip())
    if out.returncode == 0:
        r = json.loads(out.stdout)
        kinds = [c["kind"] for c in r["changes"]]
        check(r["ended_utc"] is not None and kinds[:2] == ["prescription", "refill"]
              and r["after"]["prescription"]["concentration_ng_per_ml"] == 1_000_000,
              f"records: the ended session with its changes ({kinds})")
    out = subprocess.run([THECAL, "--records", RECORDS, "records", "fhir", "--last"],
                         capture_output=True, text=True)
    if out.returncode == 0:
        b = json.loads(out.stdout)
        types = sorted({e["resource"]["resourceType"] for e in b["entry"]})
        check(b["resourceType"] == "Bundle" and "Device" in types and "AuditEvent" in types
              and "MedicationAdministration" in types, f"records: the FHIR bundle ({types})")
        with open(os.path.join(SHOTS, "session.fhir.json"), "w") as f:
            f.write(out.stdout)
    else:
        check(False, "records fhir --last: " + out.stderr.strip())
    # `thecal report`: the same report as a file, and printed to PDF by Chromium.
    html_out = os.path.join(SHOTS, "thecal-report.html")
    pdf_out = os.path.join(SHOTS, "thecal-report.pdf")
    for path in [html_out, pdf_out]:
        out = subprocess.run([THECAL, "--records", RECORDS, "report", "--last", "--out", path],
                             capture_output=True, text=True,
                             env={**os.environ, "THECAL_CHROMIUM": os.environ.get("THECAL_CHROMIUM", "/usr/bin/chromium")})
        check(out.returncode == 0, f"thecal report --out {os.path.basename(path)}: " + out.stderr.strip())
    if os.path.exists(html_out):
        page = open(html_out, encoding="utf-8").read()
        check("Refill recorded" in page and "YES: less than expected" in page and "SIM000001" in page,
              "thecal report: the HTML holds the refill's field record")
    if os.path.exists(pdf_out):
        pdf = open(pdf_out, "rb").read()
        check(pdf.startswith(b"%PDF") and len(pdf) > 10_000, f"thecal report: a PDF ({len(pdf)} bytes)")
    if failures:
        print(f"\n{len(failures)} browser check(s) failed", flush=True)
        sys.exit(1)
    print("\nbrowser journey: every check passed", flush=True)


if __name__ == "__main__":
    main()
