"""Drives the org emulator with simple-salesforce, a Salesforce client nobody on this project
wrote, and prints what it saw as one JSON object for the Rust test (client_library.rs) to check.

Usage: python simple_salesforce_client.py BASE_URL USERNAME CONSUMER_KEY KEY_FILE
       python simple_salesforce_client.py --client-credentials BASE_URL CONSUMER_KEY SECRET DOMAIN

simple-salesforce speaks https to login.salesforce.com (or https://DOMAIN.salesforce.com) and
to the instance URL; a transport adapter sends every one of its requests to the emulator at
BASE_URL (plain http on loopback) instead, leaving paths, headers and bodies as the library made
them. In the client credentials mode the adapter also keeps the host the library addressed in
the Host header, so the emulator sees (and records) which host the token request went to.
"""

import json
import sys
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError


class Loopback(HTTPAdapter):
    """Rewrites the scheme and host of every request to the emulator's."""

    def __init__(self, base_url, keep_host=False):
        super().__init__()
        self.netloc = urlsplit(base_url).netloc
        self.keep_host = keep_host

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        if self.keep_host:
            request.headers["Host"] = parts.netloc
        request.url = urlunsplit(("http", self.netloc, parts.path, parts.query, ""))
        return super().send(request, **kwargs)


def client_credentials(base_url, consumer_key, consumer_secret, domain):
    """Logs in with the client credentials flow (simple-salesforce takes it when given a
    consumer key and secret and a domain other than login/test) and queries."""
    session = requests.Session()
    adapter = Loopback(base_url, keep_host=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    sf = Salesforce(
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        domain=domain,
        session=session,
    )
    seen = {"instance": sf.sf_instance}
    me = sf.query("SELECT Username FROM User WHERE Username = 'runas@acme.example'")
    seen["queried"] = [r["Username"] for r in me["records"]]
    seen["org_count"] = sf.query("SELECT COUNT() FROM Organization")["totalSize"]
    # With the generic login domain the library does not try the flow at all.
    try:
        Salesforce(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            domain="login",
            session=session,
        )
        seen["login_domain"] = "logged in"
    except SalesforceAuthenticationFailed as e:
        seen["login_domain"] = e.code
    print(json.dumps(seen))


def main():
    if sys.argv[1] == "--client-credentials":
        client_credentials(*sys.argv[2:6])
        return
    base_url, username, consumer_key, key_file = sys.argv[1:5]
    session = requests.Session()
    adapter = Loopback(base_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)

    # JWT bearer login: simple-salesforce signs the assertion itself with the key file.
    sf = Salesforce(
        username=username,
        consumer_key=consumer_key,
        privatekey_file=key_file,
        session=session,
    )
    seen = {"version": sf.sf_version}

    seen["resources"] = sorted(sf.restful("").keys())
    seen["user_fields"] = [f["name"] for f in sf.User.describe()["fields"]]

    ordered = sf.query("SELECT Username FROM User ORDER BY Username DESC LIMIT 3")
    seen["ordered"] = [r["Username"] for r in ordered["records"]]
    seen["ordered_total"] = ordered["totalSize"]

    seen["count"] = sf.query("SELECT COUNT() FROM User WHERE IsActive = true")["totalSize"]

    seen["daily_api_requests"] = sf.limits()["DailyApiRequests"]

    # Paging at a batch size the client asks for (Salesforce's smallest, 200).
    page = sf.query(
        "SELECT Id, Username FROM User ORDER BY Username",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    seen["paged_total"] = page["totalSize"]
    sizes, usernames = [], []
    while True:
        sizes.append(len(page["records"]))
        usernames.extend(r["Username"] for r in page["records"])
        if page["done"]:
            break
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
    seen["page_sizes"] = sizes
    seen["paged_usernames_sorted"] = usernames == sorted(usernames)
    seen["paged_distinct"] = len(set(usernames))

    # query_all follows nextRecordsUrl itself.
    seen["query_all_total"] = len(sf.query_all("SELECT Id FROM User")["records"])

    try:
        sf.query("SELECT Id FROM Bogus")
        seen["bad_object"] = None
    except SalesforceError as e:
        seen["bad_object"] = e.content[0]["errorCode"]

    usage = sf.api_usage.get("api-usage")
    seen["api_usage"] = [usage.used, usage.total] if usage else None
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
