"""The portal's forms for data centers, clusters and networks, in Chromium: what an
administrator sees when adding, changing and removing them, and when one is refused."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Host
from overt.engine.model.status import HostStatus
from tests.e2e.web.conftest import admin_page
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """An engine with no nodes is enough: these forms only change the inventory."""
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


@pytest.fixture
def admin(browser: Browser, engine: RunningEngine) -> Iterator[Page]:
    with admin_page(browser, engine) as page:
        yield page


def _row(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))


def test_a_data_center_and_its_cluster_from_creation_to_removal(admin: Page) -> None:
    page = admin
    page.goto("/datacenters")
    page.get_by_role("link", name="New data center").click()
    expect(page.get_by_role("heading", name="New data center")).to_be_visible()
    page.get_by_label("Name").fill("branch-office")
    page.get_by_label("Description").fill("the branch office")
    page.get_by_role("button", name="Add data center").click()
    expect(page).to_have_url(re.compile(r"/datacenters$"))
    row = _row(page, "branch-office")
    expect(row).to_contain_text("the branch office")
    expect(row).to_contain_text("shared")

    # A duplicate name is refused on the form, which keeps what was typed.
    page.get_by_role("link", name="New data center").click()
    page.get_by_label("Name").fill("branch-office")
    page.get_by_label("Description").fill("a second one")
    page.get_by_role("button", name="Add data center").click()
    expect(page.get_by_role("alert")).to_contain_text("The name 'branch-office' is already in use")
    expect(page.get_by_label("Description")).to_have_value("a second one")

    page.goto("/clusters/new")
    # The fencing policy starts as oVirt's.
    expect(page.get_by_label("Fence hosts that stop answering")).to_be_checked()
    expect(page.get_by_label("Grace period (s)")).to_have_value("60")
    expect(page.get_by_label("Extra grace per running VM (s)")).to_have_value("0.5")
    expect(page.get_by_label("Skip fencing when many hosts are unreachable at once")
           ).not_to_be_checked()
    page.get_by_label("Name").fill("branch-hosts")
    page.get_by_label("Data center").select_option(label="branch-office")
    page.get_by_label("Memory overcommit (%)").fill("150")
    page.get_by_role("button", name="Add cluster").click()
    expect(page).to_have_url(re.compile(r"/clusters$"))
    expect(_row(page, "branch-hosts")).to_contain_text("branch-office")
    expect(_row(page, "branch-hosts")).to_contain_text("150%")

    # The data center still has a cluster: removing it is refused, with the reason.
    page.goto("/datacenters")
    page.get_by_role("button", name="Remove branch-office").click()
    expect(page.get_by_role("heading", name="Remove data center branch-office?")).to_be_visible()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("it still has 1 cluster(s)")
    page.goto("/datacenters")
    expect(_row(page, "branch-office")).to_be_visible()

    page.goto("/clusters")
    page.get_by_role("link", name="Edit branch-hosts").click()
    expect(page.get_by_label("Memory overcommit (%)")).to_have_value("150")
    page.get_by_label("Memory overcommit (%)").fill("200")
    page.get_by_label("Description").fill("rack 4")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "branch-hosts")).to_contain_text("200%")
    expect(_row(page, "branch-hosts")).to_contain_text("rack 4")
    # Its fencing policy, changed and shown as saved.
    page.get_by_role("link", name="Edit branch-hosts").click()
    expect(page.get_by_label("Fence hosts that stop answering")).to_be_checked()
    page.get_by_label("Fence hosts that stop answering").uncheck()
    page.get_by_label("Grace period (s)").fill("30")
    page.get_by_label("Skip fencing while the host still renews its storage leases").check()
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/clusters$"))
    page.get_by_role("link", name="Edit branch-hosts").click()
    expect(page.get_by_label("Fence hosts that stop answering")).not_to_be_checked()
    expect(page.get_by_label("Grace period (s)")).to_have_value("30")
    expect(page.get_by_label("Skip fencing while the host still renews its storage leases")
           ).to_be_checked()
    expect(page.get_by_label("Memory overcommit (%)")).to_have_value("200")
    page.goto("/clusters")
    page.get_by_role("button", name="Remove branch-hosts").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/clusters$"))
    expect(page.get_by_role("cell", name="branch-hosts", exact=True)).to_have_count(0)

    page.goto("/datacenters")
    page.get_by_role("link", name="Edit branch-office").click()
    page.get_by_label("Name").fill("branch-2")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "branch-2")).to_be_visible()
    page.get_by_role("button", name="Remove branch-2").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/datacenters$"))
    expect(page.get_by_role("cell", name="branch-2", exact=True)).to_have_count(0)
    expect(page.get_by_role("cell", name="Default", exact=True)).to_be_visible()


def test_a_network_from_creation_to_removal(admin: Page) -> None:
    page = admin
    page.goto("/networks")
    page.get_by_role("link", name="New network").click()
    page.get_by_label("Name").fill("ovirtmgmt")
    page.get_by_label("VLAN id").fill("40")
    page.get_by_role("button", name="Add network").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "The name 'ovirtmgmt' is already in use in data center Default")
    expect(page.get_by_label("VLAN id")).to_have_value("40")
    page.get_by_label("Name").fill("backup")
    page.get_by_label("MTU").fill("9000")
    page.get_by_label("migration").check()
    page.get_by_role("button", name="Add network").click()
    expect(page).to_have_url(re.compile(r"/networks$"))
    row = _row(page, "backup")
    for text in ("40", "9000", "migration, vm", "Default"):
        expect(row).to_contain_text(text)

    page.get_by_role("link", name="Edit backup").click()
    expect(page.get_by_label("VLAN id")).to_have_value("40")
    page.get_by_label("VLAN id").fill("")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "backup")).to_contain_text("none")

    # The management network stays.
    page.get_by_role("button", name="Remove ovirtmgmt").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("it is the management network")

    page.goto("/networks")
    page.get_by_role("button", name="Remove backup").click()
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page).to_have_url(re.compile(r"/networks$"))
    expect(page.get_by_role("cell", name="backup", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Remove ovirtmgmt")).to_be_visible()


@pytest.mark.parametrize(("path", "heading"), [
    ("/", "Dashboard"), ("/datacenters", "Data centers"), ("/clusters", "Clusters"),
    ("/hosts", "Hosts"), ("/storage", "Storage domains"), ("/networks", "Networks"),
    ("/vms", "Virtual machines"), ("/vms/new", "New virtual machine"), ("/jobs", "Jobs"),
    ("/events", "Events")])
def test_every_inventory_page_shows_its_content(admin: Page, path: str, heading: str) -> None:
    response = admin.goto(path)
    assert response is not None and response.status == 200
    expect(admin.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(admin.get_by_text("Something went wrong")).to_have_count(0)


def _node_with_nics(engine: RunningEngine, name: str, *, more_nics: tuple[str, ...] = (),
                    reported_bonds: list[dict[str, object]] | None = None) -> str:
    """A host row as enrollment leaves it, with the NICs (and bonds) its node reported."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                host = Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                            cluster_id=cluster.id, status=HostStatus.UP.value,
                            capabilities={"nics": [
                                {"name": "eth0", "mac": "52:54:00:00:00:01",
                                 "addresses": ["192.0.2.10/24"], "speed_mbps": 1000,
                                 "mtu": 1500},
                                {"name": "guest0", "mac": "52:54:00:00:00:02",
                                 "addresses": [], "speed_mbps": 10000, "mtu": 9000},
                                *({"name": nic, "mtu": 1500} for nic in more_nics)]},
                            reported_bonds=reported_bonds)
                session.add(host)
                return host.id
        finally:
            await db.dispose()
    # Playwright's synchronous API runs an event loop in this thread: insert from another.
    with ThreadPoolExecutor(1) as pool:
        return str(pool.submit(asyncio.run, insert()).result())


def test_a_hosts_nics_and_attaching_a_network_to_one(admin: Page, engine: RunningEngine
                                                       ) -> None:
    page = admin
    host_id = _node_with_nics(engine, "web-node")
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        system = conn.system_service()
        network = system.networks_service().add(types.Network(
            name="web-v77", data_center=types.DataCenter(name="Default"),
            vlan=types.Vlan(id=77), mtu=9000))
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
    finally:
        conn.close()

    page.goto(f"/hosts/{host_id}")
    eth0 = page.locator("tr[data-host-nic='eth0']")
    guest0 = page.locator("tr[data-host-nic='guest0']")
    expect(eth0).to_contain_text("192.0.2.10/24")
    expect(eth0).to_contain_text("1000 Mb/s")
    expect(guest0).to_contain_text("9000")
    expect(guest0.get_by_test_id("nic-networks")).to_have_text("")

    form = page.get_by_role("form", name="Attach a network")
    form.get_by_label("Network").select_option(label="web-v77 (VLAN 77)")
    form.get_by_label("Interface").select_option("eth0")
    form.get_by_role("button", name="Attach network").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "network web-v77 needs MTU 9000 but NIC eth0 of host web-node carries at most 1500")

    page.goto(f"/hosts/{host_id}")
    form = page.get_by_role("form", name="Attach a network")
    form.get_by_label("Network").select_option(label="web-v77 (VLAN 77)")
    form.get_by_label("Interface").select_option("guest0")
    form.get_by_role("button", name="Attach network").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    networks = page.locator("tr[data-host-nic='guest0']").get_by_test_id("nic-networks")
    expect(networks).to_contain_text("web-v77 (VLAN 77)")
    expect(networks).to_contain_text("out of sync")  # no node applied it: this engine has none
    expect(page.locator("tr[data-host-nic='eth0']").get_by_test_id("nic-networks")
           ).to_have_text("")

    page.get_by_role("button", name="Detach web-v77").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    expect(page.locator("tr[data-host-nic='guest0']").get_by_test_id("nic-networks")
           ).to_have_text("")


def test_bonds_and_addressing_on_a_hosts_page(admin: Page, engine: RunningEngine) -> None:
    """The node's own bond with its active slave and links, a bond created from the form
    (and one refused), an untagged network on it with IPv4 static and IPv6 DHCP set from
    the addresses form, and the bond removed once its network is detached."""
    page = admin
    host_id = _node_with_nics(
        engine, "bond-node", more_nics=("eth1", "eth2", "eth3", "eth4"),
        reported_bonds=[{"name": "bond7", "mode": "active-backup", "lacp": "off",
                         "active_slave": "eth4",
                         "slaves": [{"name": "eth3", "link_up": False},
                                    {"name": "eth4", "link_up": True}]}])
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        system = conn.system_service()
        network = system.networks_service().add(types.Network(
            name="web-flat", data_center=types.DataCenter(name="Default")))
        cluster = system.clusters_service().list(search="name=Default")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
    finally:
        conn.close()

    page.goto(f"/hosts/{host_id}")
    reported = page.locator("tr[data-host-bond='bond7']")
    expect(reported.get_by_test_id("bond-mode")).to_have_text("active-backup (1)")
    expect(reported.get_by_test_id("bond-slaves")).to_have_text("eth3 (down), eth4 (up)")
    expect(reported.get_by_test_id("bond-active-slave")).to_have_text("eth4")
    expect(reported.get_by_test_id("bond-state")).to_have_text(
        "out of sync: mode none on the engine, active-backup on the host; "
        "slaves none on the engine, eth3,eth4 on the host")

    form = page.get_by_role("form", name="Create a bond")
    form.get_by_label("Bond name").fill("bond1")
    form.get_by_label("eth1").check()
    form.get_by_role("button", name="Create bond").click()
    expect(page.get_by_role("alert")).to_contain_text("at least two distinct slave NICs")

    page.goto(f"/hosts/{host_id}")
    form = page.get_by_role("form", name="Create a bond")
    form.get_by_label("Bond name").fill("bond1")
    form.get_by_label("Mode").select_option(label="802.3ad (4)")
    form.get_by_label("eth1").check()
    form.get_by_label("eth2").check()
    form.get_by_role("button", name="Create bond").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    bond = page.locator("tr[data-host-bond='bond1']")
    expect(bond.get_by_test_id("bond-mode")).to_have_text("802.3ad (4)")
    expect(bond.get_by_test_id("bond-slaves")).to_have_text("eth1, eth2")
    expect(bond.get_by_test_id("bond-state")).to_contain_text("out of sync")  # no node here

    form = page.get_by_role("form", name="Attach a network")
    form.get_by_label("Network").select_option(label="web-flat")
    form.get_by_label("Interface").select_option("bond1")
    form.get_by_role("button", name="Attach network").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    expect(bond.get_by_test_id("nic-networks")).to_contain_text("web-flat")

    addresses = page.get_by_role("form", name="Set addresses")
    addresses.get_by_label("Network").select_option(label="web-flat")
    addresses.get_by_label("IPv4 boot protocol").select_option("static")
    addresses.get_by_label("IPv4 address").fill("10.7.0.300")
    addresses.get_by_label("Netmask").fill("255.255.255.0")
    addresses.get_by_role("button", name="Set addresses").click()
    expect(page.get_by_role("alert")).to_contain_text("10.7.0.300")

    page.goto(f"/hosts/{host_id}")
    addresses = page.get_by_role("form", name="Set addresses")
    addresses.get_by_label("Network").select_option(label="web-flat")
    addresses.get_by_label("IPv4 boot protocol").select_option("static")
    addresses.get_by_label("IPv4 address").fill("10.7.0.1")
    addresses.get_by_label("Netmask").fill("255.255.255.0")
    addresses.get_by_label("IPv6 boot protocol").select_option("dhcp")
    addresses.get_by_role("button", name="Set addresses").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    expect(bond.get_by_test_id("addressing")).to_have_text(
        "IPv4 static 10.7.0.1/255.255.255.0, IPv6 dhcp")

    bond.get_by_role("button", name="Remove bond1").click()
    expect(page.get_by_role("alert")).to_contain_text("network web-flat rides on it")
    page.goto(f"/hosts/{host_id}")
    bond.get_by_role("button", name="Detach web-flat").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    bond.get_by_role("button", name="Remove bond1").click()
    expect(page).to_have_url(re.compile(rf"/hosts/{host_id}$"))
    expect(page.locator("tr[data-host-bond='bond1']")).to_have_count(0)
    expect(page.locator("tr[data-host-bond='bond7']")).to_have_count(1)


def test_vnic_profiles_added_refused_and_removed(admin: Page, engine: RunningEngine) -> None:
    page = admin
    page.goto("/networks")
    page.get_by_role("link", name="vNIC profiles").click()
    expect(page.get_by_role("heading", name="vNIC profiles")).to_be_visible()
    expect(page.locator("tr[data-profile='ovirtmgmt@ovirtmgmt']")).to_be_visible()

    form = page.get_by_role("form", name="New vNIC profile")
    form.get_by_label("Name").fill("mirror")
    form.locator("select[name=network]").select_option(label="ovirtmgmt")
    form.get_by_label("Network filter").select_option("clean-traffic")
    form.get_by_label("Port mirroring").check()
    form.get_by_role("button", name="Add profile").click()
    row = page.locator("tr[data-profile='mirror@ovirtmgmt']")
    for text in ("clean-traffic", "yes"):
        expect(row).to_contain_text(text)

    form = page.get_by_role("form", name="New vNIC profile")
    form.get_by_label("Name").fill("mirror")
    form.locator("select[name=network]").select_option(label="ovirtmgmt")
    form.get_by_role("button", name="Add profile").click()
    expect(page.get_by_role("alert")).to_contain_text("already used by network ovirtmgmt")
    expect(page.locator("tr[data-profile^='mirror@']")).to_have_count(1)

    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name="profile-user", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="Blank")))
        profile = next(p for p in conn.system_service().vnic_profiles_service().list()
                       if p.name == "mirror")
        vms.vm_service(vm.id).nics_service().add(types.Nic(
            name="nic1", vnic_profile=types.VnicProfile(id=profile.id)))
        page.goto("/vnicprofiles")
        expect(row.locator("td").nth(4)).to_have_text("1")
        page.get_by_role("button", name="Remove mirror of ovirtmgmt").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "Cannot remove VM network interface profile mirror: 1 VM NIC(s) use it")
        vms.vm_service(vm.id).remove()
        # removal is a job: the profile is free once the VM is gone
        wait_until(lambda: all(v.id != vm.id for v in vms.list()), 60, "the VM's removal")
    finally:
        conn.close()
    page.goto("/vnicprofiles")
    page.get_by_role("button", name="Remove mirror of ovirtmgmt").click()
    expect(page).to_have_url(re.compile(r"/vnicprofiles$"))
    expect(page.locator("tr[data-profile^='mirror@']")).to_have_count(0)
