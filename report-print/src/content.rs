//! What a report says, as sections of labelled fields and tables, in one language: the PDF
//! and the text are both written from this, so they never differ.

use fieldsync_shared::job::{BillingMode, Channel, Job, JobKind, PartUsed, SignatureMark, Survey};
use fieldsync_shared::report::SignedReport;
use fieldsync_shared::rules::charges;
use fieldsync_shared::time::{CalendarDate, Money, Timestamp};

use crate::{Language, PrintError, PrintOptions};

/// A whole report.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub language: Language,
    pub title: String,
    /// "Preview: not signed" or "Signed report …".
    pub status: String,
    pub sections: Vec<Section>,
    pub signature: Signature,
    /// Present for a signed report.
    pub seal: Option<Seal>,
    /// The footer of every page.
    pub footer: String,
    /// The PDF's title in its metadata.
    pub doc_title: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub title: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A label and its value (which may wrap).
    Field { label: String, value: String },
    /// A table: column headers, rows of cells, and each column's share of the width.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
        widths: Vec<f32>,
    },
}

/// The customer's signature box (R8).
#[derive(Debug, Clone)]
pub(crate) struct Signature {
    pub title: String,
    /// The mark, when the customer has signed.
    pub mark: Option<SignatureMark>,
    /// What stands in the box before the customer signs.
    pub placeholder: String,
    pub fields: Vec<(String, String)>,
}

/// The signed report's identity and its QR code.
#[derive(Debug, Clone)]
pub(crate) struct Seal {
    pub title: String,
    pub fields: Vec<(String, String)>,
    pub qr: String,
}

/// The words of the form in one language.
struct Words {
    lang: Language,
}

impl Words {
    fn t(&self, zh: &'static str, en: &'static str) -> String {
        match self.lang {
            Language::Zh => zh.to_owned(),
            Language::En => en.to_owned(),
        }
    }

    fn none(&self) -> String {
        self.t("无", "none")
    }

    fn not_recorded(&self) -> String {
        self.t("未记录", "not recorded")
    }

    fn kind(&self, kind: JobKind) -> String {
        match kind {
            JobKind::Repair => self.t("维修", "repair"),
            JobKind::Installation => self.t("安装调试", "installation and commissioning"),
            JobKind::Maintenance => self.t("保养", "maintenance"),
            JobKind::FollowUp => self.t("回访", "follow-up"),
        }
    }

    fn channel(&self, channel: Channel) -> String {
        match channel {
            Channel::Phone => self.t("电话", "phone"),
            Channel::Letter => self.t("信函", "letter"),
            Channel::Visit => self.t("来访", "visit"),
            Channel::Email => self.t("电子邮件", "email"),
            Channel::Web => self.t("网站", "web"),
        }
    }

    fn yes_no(&self, b: bool) -> String {
        if b {
            self.t("是", "yes")
        } else {
            self.t("否", "no")
        }
    }
}

/// Money as money: `CNY 140.00`.
pub(crate) fn money(currency: &str, m: Money) -> String {
    format!("{currency} {m}")
}

fn text_or(s: Option<&str>, otherwise: &str) -> String {
    match s.map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => otherwise.to_owned(),
    }
}

fn date_or(d: Option<CalendarDate>, otherwise: &str) -> String {
    d.map_or_else(|| otherwise.to_owned(), |d| d.to_string())
}

/// Builds the report of `job` (for a signed report, the job as reported).
pub(crate) fn build(
    job: &Job,
    signed: Option<&SignedReport>,
    options: &PrintOptions,
) -> Result<Page, PrintError> {
    let w = Words {
        lang: options.language,
    };
    let zone = &options.zone;
    let at = |t: Timestamp| zone.format(t);
    let opt_at = |t: Option<Timestamp>| t.map_or_else(|| w.not_recorded(), at);
    let cur = job.billing.currency.as_str();
    let c = charges(job)?;
    let nr = w.not_recorded();
    let field = |label: String, value: String| Item::Field { label, value };

    let mut sections = Vec::new();

    // The job, the branch and the customer (R1, R26).
    sections.push(Section {
        title: w.t("客户与服务网点", "Customer and branch"),
        items: vec![
            field(w.t("服务网点", "Branch"), job.branch_id.to_string()),
            field(w.t("工单号", "Job"), job.job_id.to_string()),
            field(w.t("服务类型", "Kind of job"), w.kind(job.kind)),
            field(w.t("客户", "Customer"), job.customer.name.clone()),
            field(w.t("联系人", "Contact"), job.customer.contact.clone()),
            field(
                w.t("服务地址", "Site address"),
                job.customer.site_address.clone(),
            ),
        ],
    });
    sections.push(Section {
        title: w.t("产品", "Product"),
        items: vec![
            field(w.t("型号", "Model"), job.product.model.clone()),
            field(w.t("序列号", "Serial number"), job.product.serial.clone()),
            field(
                w.t("产品类别", "Product type"),
                job.product.product_type.clone(),
            ),
            field(
                w.t("购买日期", "Purchased"),
                date_or(job.product.purchase_date, &nr),
            ),
            field(
                w.t("保修截止", "Warranty until"),
                date_or(job.product.warranty_end, &nr),
            ),
        ],
    });
    sections.push(Section {
        title: w.t("报修与到场", "Request and visit"),
        items: {
            let mut items = vec![
                field(
                    w.t("报修时间", "Request received"),
                    format!(
                        "{} ({})",
                        at(job.request.received_at),
                        w.channel(job.request.channel)
                    ),
                ),
                field(
                    w.t("故障描述", "Fault reported"),
                    job.request.fault_description.clone(),
                ),
                field(
                    w.t("要求到场", "Arrival requested by"),
                    opt_at(job.request.requested_arrival),
                ),
                field(
                    w.t("预约时间", "Appointment"),
                    opt_at(job.visit.appointment),
                ),
                field(w.t("到场时间", "Arrival"), opt_at(job.visit.arrival)),
            ];
            if let Some(b) = &job.visit.safety_briefing {
                items.push(field(
                    w.t("安全交底", "Safety briefing"),
                    format!("{} · {} · {}", at(b.at), b.by, b.notes),
                ));
            }
            items.push(field(
                w.t("离场报备", "Check-out"),
                match &job.visit.check_out {
                    Some(c) => format!("{} · {} · {}", at(c.at), c.by, c.note),
                    None => nr.clone(),
                },
            ));
            items
        },
    });

    // R7: what was wrong and what was done.
    let mut diagnosis = vec![
        field(
            w.t("故障原因", "Fault cause"),
            text_or(job.diagnosis.fault_cause.as_deref(), &nr),
        ),
        field(
            w.t("处理方法", "Solution"),
            text_or(job.diagnosis.solution.as_deref(), &nr),
        ),
    ];
    if let Some(category) = job.diagnosis.fault_category.as_deref() {
        diagnosis.insert(
            1,
            field(w.t("故障类别", "Fault category"), category.to_owned()),
        );
    }
    if let Some(t) = &job.visit.training {
        // R16: training of the customer's staff.
        diagnosis.push(field(
            w.t("培训", "Training"),
            format!(
                "{} · {} · {}: {}",
                at(t.at),
                t.by,
                t.trainees.join(", "),
                t.topics
            ),
        ));
    }
    sections.push(Section {
        title: w.t("故障与处理", "Diagnosis and work done"),
        items: diagnosis,
    });

    // R7, R10: parts, labour, travel and what they cost.
    let mut work = Vec::new();
    if job.parts.is_empty() {
        work.push(field(w.t("更换零件", "Parts replaced"), w.none()));
    } else {
        work.push(Item::Table {
            header: vec![
                w.t("零件", "Part"),
                w.t("零件号 / 规格", "Number / spec."),
                w.t("数量", "Qty"),
                w.t("单价", "Unit price"),
                w.t("金额", "Amount"),
                w.t("保修", "Warranty"),
            ],
            rows: job.parts.iter().map(|p| part_row(&w, cur, p)).collect(),
            widths: vec![0.27, 0.25, 0.08, 0.15, 0.15, 0.10],
        });
    }
    work.push(field(
        w.t("工时", "Labour"),
        format!(
            "{} {} × {}/{} = {}",
            job.labour.minutes,
            w.t("分钟", "min"),
            money(cur, job.labour.rate_per_hour),
            w.t("小时", "h"),
            money(cur, c.labour)
        ),
    ));
    work.push(field(
        w.t("差旅", "Travel"),
        format!(
            "{:.1} km, {}",
            f64::from(job.travel.distance_m) / 1000.0,
            money(cur, c.travel)
        ),
    ));
    sections.push(Section {
        title: w.t("零件、工时与差旅", "Parts, labour and travel"),
        items: work,
    });

    let mut fees = vec![
        field(w.t("零件合计", "Parts"), money(cur, c.parts)),
        field(
            w.t("其中保修零件", "of which parts under warranty"),
            money(cur, c.parts_under_warranty),
        ),
        field(w.t("工时费", "Labour"), money(cur, c.labour)),
        field(w.t("差旅费", "Travel"), money(cur, c.travel)),
        field(
            w.t("服务成本合计", "Cost of the service"),
            money(cur, c.cost),
        ),
    ];
    match job.billing.mode {
        BillingMode::Warranty => {
            fees.push(field(w.t("收费方式", "Billing"), w.t("保修", "warranty")));
            fees.push(field(
                w.t("客户应付", "Customer pays"),
                money(cur, c.customer_pays),
            ));
            fees.push(field(
                w.t("说明", "Note"),
                match options.language {
                    Language::Zh => format!(
                        "保修期内服务（R10）：本次服务成本 {} 由公司承担，客户无需付费。",
                        money(cur, c.cost)
                    ),
                    Language::En => format!(
                        "Warranty service (R10): the company bears the cost of {}; the customer pays nothing.",
                        money(cur, c.cost)
                    ),
                },
            ));
        }
        BillingMode::Billable => {
            fees.push(field(
                w.t("收费方式", "Billing"),
                w.t("有偿服务", "billable"),
            ));
            fees.push(field(
                w.t("客户应付", "Customer pays"),
                money(cur, c.customer_pays),
            ));
            fees.push(field(
                w.t("发票号", "Invoice"),
                text_or(job.billing.invoice_number.as_deref(), &nr),
            ));
        }
    }
    sections.push(Section {
        title: w.t("费用", "Charges"),
        items: fees,
    });

    // R5: a product taken back.
    sections.push(Section {
        title: w.t("产品交接", "Hand-over"),
        items: match &job.handover {
            None => vec![field(
                w.t("带回产品", "Product taken back"),
                w.t("无（现场完成）", "none (done on site)"),
            )],
            Some(h) => vec![
                field(w.t("带回物品", "Items taken back"), h.items.clone()),
                field(w.t("原因", "Reason"), h.reason.clone()),
                field(w.t("交接时间", "Taken at"), at(h.taken_at)),
                field(
                    w.t("承诺完成", "Promised completion"),
                    opt_at(h.promised_completion),
                ),
                field(w.t("技术员", "Technician"), h.technician.to_string()),
                field(
                    w.t("客户交接人", "Handed over by"),
                    h.customer_signer.clone(),
                ),
            ],
        },
    });

    // Issue 15: the photos and receipts, by the SHA-256 the signature covers (only when there
    // are some, so a report without attachments prints as before).
    if !job.attachments.is_empty() {
        use fieldsync_shared::job::attachments::AttachmentKind;
        let rows = job
            .attachments
            .iter()
            .map(|a| {
                let kind = match a.kind {
                    AttachmentKind::Before => w.t("维修前", "before"),
                    AttachmentKind::After => w.t("维修后", "after"),
                    AttachmentKind::Receipt => w.t("收据", "receipt"),
                    AttachmentKind::Signature => w.t("签名图像", "signature"),
                };
                vec![
                    kind,
                    a.name.clone(),
                    format!("{} KB", a.size.div_ceil(1000)),
                    // In groups of 16, so the cell wraps between them.
                    a.digest
                        .as_bytes()
                        .chunks(16)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
            .collect();
        sections.push(Section {
            title: w.t("附件（照片与收据）", "Attachments (photos and receipts)"),
            items: vec![Item::Table {
                header: vec![
                    w.t("类别", "Kind"),
                    w.t("文件", "File"),
                    w.t("大小", "Size"),
                    w.t("摘要", "Digest"),
                ],
                rows,
                widths: vec![0.12, 0.28, 0.1, 0.5],
            }],
        });
    }

    // R9 and R7: the survey and the customer's opinion.
    let survey = job.acknowledgement.as_ref().map(|a| &a.survey);
    let mut feedback = survey_items(&w, survey);
    feedback.push(field(
        w.t("客户意见", "Customer's opinion"),
        text_or(job.customer_opinion.as_deref(), &nr),
    ));
    sections.push(Section {
        title: w.t("满意度调查与客户意见", "Satisfaction survey and opinion"),
        items: feedback,
    });

    let signature = Signature {
        title: w.t("客户签字确认", "Customer's acceptance"),
        mark: job.acknowledgement.as_ref().map(|a| a.signature.clone()),
        placeholder: w.t(
            "客户阅读以上内容后在此签字",
            "The customer signs here after reading the above",
        ),
        fields: match &job.acknowledgement {
            Some(a) => vec![
                (w.t("签字人", "Signed by"), a.signer_name.clone()),
                (w.t("签字时间", "Signed at"), at(a.signed_at)),
                (w.t("签字设备", "Device"), a.device_id.to_string()),
            ],
            None => vec![
                (w.t("签字人", "Signed by"), String::new()),
                (w.t("签字时间", "Signed at"), String::new()),
            ],
        },
    };

    let seal = signed.map(|r| {
        let b = &r.body;
        let qr = match &options.verify_url {
            Some(base) => format!("{base}{}?digest={}", b.report_id, b.content_digest),
            None => format!(
                "fieldsync:report:{}:sha256:{}",
                b.report_id, b.content_digest
            ),
        };
        let mut fields = vec![
            (w.t("报告编号", "Report id"), b.report_id.clone()),
            (w.t("签发网点", "Signed by branch"), b.branch_id.to_string()),
            (w.t("签发时间", "Signed at"), at(b.signed_at)),
            (w.t("网点密钥", "Branch key"), b.key_id.as_str().to_owned()),
            (
                w.t("内容摘要", "Content digest"),
                format!("SHA-256 {}", b.content_digest),
            ),
        ];
        if let Some(old) = &b.supersedes {
            fields.push((w.t("取代报告", "Supersedes"), old.clone()));
        }
        Seal {
            title: w.t(
                "网点签发（电子签名）",
                "Signed by the branch (electronic signature)",
            ),
            fields,
            qr,
        }
    });

    let status = match signed {
        Some(r) => match options.language {
            Language::Zh => format!(
                "已签发报告 {}，可用 fieldsync verify 校验本文件",
                r.body.report_id
            ),
            Language::En => format!(
                "Signed report {}: check this file with fieldsync verify",
                r.body.report_id
            ),
        },
        None => w.t(
            "预览：客户签字前请核对以下内容",
            "Preview: for the customer to read before signing",
        ),
    };
    let title = w.t("售后服务报告单", "After-sales service report");
    let footer = match options.language {
        Language::Zh => format!("工单 {} · 时间为 {}", job.job_id, zone_label(job, options)),
        Language::En => format!("Job {} · times in {}", job.job_id, zone_label(job, options)),
    };
    Ok(Page {
        language: options.language,
        doc_title: format!("{title} {}", job.customer.name),
        title,
        status,
        sections,
        signature,
        seal,
        footer,
    })
}

/// The zone and the offset in force when the request came in (the report's first time).
fn zone_label(job: &Job, options: &PrintOptions) -> String {
    options.zone.label_at(job.request.received_at)
}

fn part_row(w: &Words, cur: &str, p: &PartUsed) -> Vec<String> {
    let line = Money(i64::from(p.quantity).saturating_mul(p.unit_price.0));
    let spec = match (p.part_number.trim(), p.specification.trim()) {
        ("", s) | (s, "") => s.to_owned(),
        (n, s) => format!("{n} / {s}"),
    };
    vec![
        p.name.clone(),
        spec,
        p.quantity.to_string(),
        money(cur, p.unit_price),
        money(cur, line),
        w.yes_no(p.warranty),
    ]
}

fn survey_items(w: &Words, survey: Option<&Survey>) -> Vec<Item> {
    let labels = [
        w.t("服务态度", "Attitude"),
        w.t("技术水平", "Technical skill"),
        w.t("准时", "Punctuality"),
        w.t("服务项目", "Service items"),
    ];
    let Some(survey) = survey else {
        return vec![Item::Field {
            label: w.t("满意度调查", "Survey"),
            value: w.t("客户签字时填写", "filled in when the customer signs"),
        }];
    };
    let mut items: Vec<Item> = labels
        .into_iter()
        .zip(survey.scores())
        .map(|(label, (_, score))| Item::Field {
            label,
            value: match score {
                Some(s) => format!("{s} / 5"),
                None => w.t("未作答", "not answered"),
            },
        })
        .collect();
    items.push(Item::Field {
        label: w.t("建议", "Suggestions"),
        value: text_or(Some(&survey.suggestions), &w.none()),
    });
    items
}
