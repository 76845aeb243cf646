# Upper-case names sort before '_' and lower case by UTF-8 bytes.
ZETA = 26
