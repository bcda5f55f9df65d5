//! A POSIX/GNU `getopt` for the qemu-io command language: clustered flags
//! (`-qv`), attached or separate option arguments (`-P0xab`, `-P 0xab`),
//! operands permuted after options as glibc does, `--` ends options.

/// The result of parsing one command line.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Options in order: (letter, argument).
    pub opts: Vec<(char, Option<String>)>,
    /// The operands.
    pub operands: Vec<String>,
}

/// Why parsing failed: qemu-io prints `<cmd>: invalid option -- 'x'` or
/// `<cmd>: option requires an argument -- 'x'` to stderr, then the usage.
#[derive(Debug)]
pub enum GetoptError {
    /// An unknown option letter.
    Invalid(char),
    /// A known option letter without its argument.
    MissingArg(char),
}

/// Parses `args` (without the command name) against a getopt spec such as
/// `"bCl:pP:qs:v"`.
pub fn getopt(args: &[String], spec: &str) -> Result<Parsed, GetoptError> {
    let mut p = Parsed::default();
    let mut i = 0;
    let takes_arg = |c: char| -> Option<bool> {
        let mut it = spec.chars().peekable();
        while let Some(s) = it.next() {
            let has = it.peek() == Some(&':');
            if has {
                it.next();
            }
            if s == c {
                return Some(has);
            }
        }
        None
    };
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            p.operands.extend(args[i + 1..].iter().cloned());
            break;
        }
        if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                match takes_arg(c) {
                    None => return Err(GetoptError::Invalid(c)),
                    Some(false) => p.opts.push((c, None)),
                    Some(true) => {
                        let rest: String = chars[j + 1..].iter().collect();
                        if !rest.is_empty() {
                            p.opts.push((c, Some(rest)));
                        } else if i + 1 < args.len() {
                            i += 1;
                            p.opts.push((c, Some(args[i].clone())));
                        } else {
                            return Err(GetoptError::MissingArg(c));
                        }
                        break;
                    }
                }
                j += 1;
            }
        } else {
            p.operands.push(a.clone());
        }
        i += 1;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn clusters_and_args() {
        let p = getopt(&v(&["-qv", "-P0xab", "0", "-s", "4", "4k"]), "bCl:pP:qs:v").unwrap();
        assert_eq!(p.operands, v(&["0", "4k"]));
        assert_eq!(p.opts.len(), 4);
        assert!(matches!(
            getopt(&v(&["-x"]), "q"),
            Err(GetoptError::Invalid('x'))
        ));
        assert!(matches!(
            getopt(&v(&["-P"]), "P:"),
            Err(GetoptError::MissingArg('P'))
        ));
    }
}
