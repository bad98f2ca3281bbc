// Pre-fills the incoming and outgoing servers for known providers from the address typed,
// and shows the provider's note (Gmail's recent: user names, app passwords). Fields stay editable.
(function () {
  "use strict";
  var presetsNode = document.getElementById("provider-presets");
  var form = document.getElementById("mailbox-form");
  if (!presetsNode || !form) { return; }
  var presets = JSON.parse(presetsNode.textContent);
  var note = document.getElementById("provider-note");
  function field(name) { return form.elements.namedItem(name); }
  function setRadio(name, value) {
    var radios = form.querySelectorAll('input[name="' + name + '"]');
    radios.forEach(function (r) { r.checked = (r.value === value); });
  }
  function providerFor(address) {
    var domain = (address.split("@")[1] || "").toLowerCase();
    return presets.find(function (p) { return p.domains.indexOf(domain) !== -1; });
  }
  function apply() {
    var address = field("email_address");
    if (!address) { return; }
    var provider = providerFor(address.value);
    if (!provider) { note.hidden = true; return; }
    note.textContent = provider.note; note.hidden = !provider.note;
    var host = field("pop3_host");
    if (host && !host.dataset.touched) {
      host.value = provider.pop3_host; field("pop3_port").value = provider.pop3_port; setRadio("pop3_security", provider.pop3_security);
    }
    var smtp = field("smtp_host");
    if (smtp && !smtp.dataset.touched) {
      smtp.value = provider.smtp_host; field("smtp_port").value = provider.smtp_port; setRadio("smtp_security", provider.smtp_security);
    }
    var user = field("pop3_username");
    if (user && !user.value) { user.value = address.value; }
  }
  ["pop3_host", "smtp_host"].forEach(function (name) {
    var input = field(name);
    if (input) { input.addEventListener("input", function () { input.dataset.touched = "1"; }); if (input.value) { input.dataset.touched = "1"; } }
  });
  var address = field("email_address");
  if (address) { address.addEventListener("change", apply); address.addEventListener("blur", apply); }
  function toggleSmtpCredentials() {
    var same = field("smtp_same_credentials");
    if (!same) { return; }
    ["smtp_username", "smtp_password"].forEach(function (name) {
      var wrap = document.getElementById("field-" + name);
      if (wrap) { wrap.hidden = same.checked; }
    });
  }
  var sameBox = field("smtp_same_credentials");
  if (sameBox) { sameBox.addEventListener("change", toggleSmtpCredentials); toggleSmtpCredentials(); }
})();
