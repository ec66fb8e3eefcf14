//! The built-in wording of mails and the deny page, used where no template
//! file says otherwise. English; `conf/templates/` shows how to change it.

pub(super) const BUILT_IN_TEXT: &str = "Hello {user},

your one-time password is: {otp}

It is valid for {minutes} minutes, until {expires}.

The login was asked for
from:    {client_ip}
through: {nas}
at:      {time}
If you did not just try to log in, do not use the code,
and please tell your IT team.
";

pub(super) const BUILT_IN_LINK_TEXT: &str = "Hello {user},

to finish logging in, open this link and press Confirm:

{link}

The link works once, for {minutes} minutes (until {expires}).
Then go back to your VPN client and press Enter.

The login was asked for
from:    {client_ip}
through: {nas}
at:      {time}
If you did not just try to log in, do not open the link,
and please tell your IT team.
";

/// Added to the built-in text when the mail carries a deny link.
pub(super) const BUILT_IN_DENY: &str = "
If this was not you, open this link and press \"This wasn't me\":
{deny_link}
";

/// The page after "This wasn't me": what happened and what to do next.
pub(super) const BUILT_IN_DENY_PAGE: &str = "<h1>The login was stopped</h1>
<p>The login as <strong>{user}</strong> from {client_ip} through {nas} at {time} was stopped.</p>
<p>Someone may know your PIN or password. Change it now, and tell your help desk
that you did not ask for this login.</p>";

/// The HTML part's frame; the body of a code's or a link's mail goes between.
pub(super) const BUILT_IN_HTML_HEAD: &str = "<!DOCTYPE html>
<html><head><meta charset=\"utf-8\"></head>
<body style=\"font-family: sans-serif; line-height: 1.4\">
<p>Hello {user},</p>
";

pub(super) const BUILT_IN_HTML_TEXT: &str = "<p>your one-time password is:</p>
<p style=\"font-size: 1.6em; letter-spacing: 0.15em\"><strong>{otp}</strong></p>
<p>It is valid for {minutes} minutes, until {expires}.</p>
";

pub(super) const BUILT_IN_HTML_LINK: &str =
    "<p>to finish logging in, open <a href=\"{link}\">this link</a> and press Confirm.</p>
<p>The link works once, for {minutes} minutes (until {expires}).
Then go back to your VPN client and press Enter.</p>
";

/// Who asked, in the HTML part (values escaped when rendered).
pub(super) const BUILT_IN_HTML_ASKED: &str = "<p>The login was asked for<br>
from: {client_ip}<br>
through: {nas}<br>
at: {time}</p>
<p>If you did not just try to log in, do not use this mail,
and please tell your IT team.</p>
";

/// Added to the HTML part when the mail carries a deny link.
pub(super) const BUILT_IN_HTML_DENY: &str =
    "<p>If this was not you, open <a href=\"{deny_link}\">this link</a> and press \"This wasn't me\".</p>
";

pub(super) const BUILT_IN_HTML_FOOT: &str = "</body></html>
";
