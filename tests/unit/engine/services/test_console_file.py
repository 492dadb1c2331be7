"""The remote-viewer connection file, line by line as oVirt's ConsoleDescriptorGenerator
writes it for a VNC console."""

import configparser
import uuid

from overt.engine.services.consoles import connection_file

VM_ID = uuid.UUID("5f27d523-7b47-49ca-a0c5-526a747e8388")
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_file_is_what_remote_viewer_reads() -> None:
    text = connection_file(vm_id=VM_ID, vm_name="web1", address="10.0.0.5", port=5901,
                           password="s3cretpw", expiry_s=120, engine_host="engine:8443",
                           sso_token="TOKEN", ca_pem=CA)
    assert text == (
        "[virt-viewer]\ntype=vnc\nhost=10.0.0.5\nport=5901\npassword=s3cretpw\n"
        "# Password is valid for 120 seconds.\ndelete-this-file=1\nfullscreen=0\n"
        "title=web1:%d\ntoggle-fullscreen=shift+f11\nrelease-cursor=shift+f12\n"
        "secure-attention=ctrl+alt+end\n\n[ovirt]\nhost=engine:8443\n"
        f"vm-guid={VM_ID}\nsso-token=TOKEN\nadmin=1\n"
        "ca=-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\n")
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(text)
    assert parsed["virt-viewer"]["password"] == "s3cretpw"
    assert "\n" not in parsed["ovirt"]["ca"]
